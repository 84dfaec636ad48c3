"""Helpers for the KIP-848 consumer-group tests: heartbeats against a coordinator
with a fake clock, and a member that behaves as a well-mannered client
(revokes what it is told to, reports what it owns)."""

from __future__ import annotations

import uuid

from logbroker.broker.groups import ConsumerHeartbeat, ConsumerHeartbeatResult, GroupCoordinator, TopicMeta

SIX = {"t": TopicMeta(uuid.UUID(int=1), 6)}

_UNSET = object()


def heartbeat(coord: GroupCoordinator, member: str, epoch: int, now: int, *, group: str = "g", topics=None,
              owned=_UNSET, names=_UNSET, regex: str | None = None, assignor: str | None = None,
              instance: str | None = None, rebalance: int | None = None) -> ConsumerHeartbeatResult:
    """One heartbeat; a join (epoch 0) sends what a join must (names ("t",), no partitions)."""
    joining = epoch == 0
    if names is _UNSET:
        names = ("t",) if joining and regex is None else None
    if owned is _UNSET:
        owned = {} if joining else None
    if rebalance is None:
        rebalance = 30_000 if joining else -1
    return coord.consumer_heartbeat(
        ConsumerHeartbeat(
            group_id=group, member_id=member, member_epoch=epoch, instance_id=instance,
            rebalance_timeout_ms=rebalance, subscribed_names=names, subscribed_regex=regex,
            server_assignor=assignor, owned=owned, client_id="test",
        ),
        SIX if topics is None else topics,
        now,
    )


def as_dict(assignment) -> dict[str, frozenset[int]]:
    return {topic: frozenset(parts) for topic, parts in assignment or ()}


class Client:
    """A member as librdkafka behaves: it adopts each assignment it is sent
    (dropping what is no longer there) and reports what it owns."""

    def __init__(self, coord: GroupCoordinator, member_id: str, *, group: str = "g", instance: str | None = None,
                 names=("t",), regex: str | None = None, assignor: str | None = None) -> None:
        self.coord = coord
        self.member_id = member_id
        self.group = group
        self.instance = instance
        self.names = names
        self.regex = regex
        self.assignor = assignor
        self.epoch = 0
        self.owned: dict[str, frozenset[int]] = {}
        self.last: ConsumerHeartbeatResult | None = None
        self.lost = False

    def beat(self, now: int, topics=None) -> ConsumerHeartbeatResult:
        """A heartbeat; after a lost answer (``lost``) a full one, as librdkafka sends."""
        joining = self.epoch == 0
        full = joining or self.lost
        result = heartbeat(
            self.coord, self.member_id, self.epoch, now, group=self.group, topics=topics, instance=self.instance,
            names=self.names if full else None, rebalance=30_000 if full else -1,
            regex=self.regex if full else None, assignor=self.assignor if full else None,
            owned={} if joining else dict(self.owned),
        )
        self.last = result
        self.lost = False
        if result.error.value in ("fenced_member_epoch", "unknown_member_id"):
            self.epoch, self.owned = 0, {}  # drop everything and rejoin, as librdkafka does
        if result.error.value != "none":
            return result
        self.epoch = result.member_epoch
        if result.assignment is not None:
            self.owned = as_dict(result.assignment)
        return result

    def leave(self, now: int, *, static: bool = False) -> ConsumerHeartbeatResult:
        result = heartbeat(self.coord, self.member_id, -2 if static else -1, now, group=self.group,
                           instance=self.instance, owned=None)
        self.epoch = 0
        self.owned = {}
        return result

    def partitions(self) -> set[tuple[str, int]]:
        return {(t, p) for t, ps in self.owned.items() for p in ps}
