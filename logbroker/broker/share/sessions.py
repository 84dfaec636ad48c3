"""Share sessions (KIP-932): the partitions a member fetches, and the epoch
that orders its ShareFetch/ShareAcknowledge requests.

Epoch 0 opens a session (replacing the member's old one, whose records are
released), -1 closes it after its acknowledgements, any other value must
equal the session's next epoch, which then moves on by one (wrapping from
INT32_MAX to 1). A ShareFetch adds the partitions it names to the session
and drops its forgotten ones; every fetch reads all of the session's
partitions. Sessions are kept per (group, member) and expire after the
group's session timeout without a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from logbroker.broker.share.results import ShareError

INITIAL_EPOCH = 0
FINAL_EPOCH = -1
_INT32_MAX = 2**31 - 1


@dataclass(eq=False, slots=True)
class ShareSession:
    """One member's session. ``partitions`` keeps insertion order; ``rotate``
    is where the next fetch starts reading, so partitions take turns."""

    group_id: str
    member_id: str
    epoch: int = 1
    partitions: dict[tuple[str, int], None] = field(default_factory=dict)
    last_used: int = 0
    expiry_at: int | None = None
    rotate: int = 0

    def __repr__(self) -> str:
        return f"ShareSession({self.group_id!r}, {self.member_id!r}, epoch={self.epoch}, partitions={len(self.partitions)})"

    def bump(self) -> None:
        self.epoch = 1 if self.epoch >= _INT32_MAX else self.epoch + 1

    def ordered(self) -> list[tuple[str, int]]:
        """The partitions, starting with the one whose turn it is."""
        items = list(self.partitions)
        if not items:
            return items
        k = self.rotate % len(items)
        self.rotate = k + 1
        return items[k:] + items[:k]


class ShareSessions:
    """Every open share session, by (group, member). Not thread-safe."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, str], ShareSession] = {}

    def __repr__(self) -> str:
        return f"ShareSessions({len(self._sessions)})"

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, group_id: str, member_id: str) -> ShareSession | None:
        return self._sessions.get((group_id, member_id))

    def of_group(self, group_id: str) -> list[ShareSession]:
        return [s for (g, _), s in self._sessions.items() if g == group_id]

    def all(self) -> list[ShareSession]:
        return list(self._sessions.values())

    def open(self, group_id: str, member_id: str, now_ms: int) -> tuple[ShareSession, ShareSession | None]:
        """A new session (epoch 0); returns it and the one it replaced, if any."""
        old = self._sessions.pop((group_id, member_id), None)
        session = self._sessions[(group_id, member_id)] = ShareSession(group_id, member_id, last_used=now_ms)
        return session, old

    def check(self, group_id: str, member_id: str, epoch: int) -> tuple[ShareSession | None, ShareError]:
        """The session a request with ``epoch`` (not 0) continues, or why not.

        A wrong epoch closes the session (the client reopens with epoch 0)."""
        session = self._sessions.get((group_id, member_id))
        if session is None:
            return None, ShareError.SHARE_SESSION_NOT_FOUND
        if epoch != FINAL_EPOCH and epoch != session.epoch:
            return session, ShareError.INVALID_SHARE_SESSION_EPOCH
        return session, ShareError.NONE

    def close(self, session: ShareSession) -> None:
        if self._sessions.get((session.group_id, session.member_id)) is session:
            del self._sessions[(session.group_id, session.member_id)]
