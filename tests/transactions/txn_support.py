"""Helpers for the transaction coordinator tests."""

from __future__ import annotations

from dataclasses import replace

from logbroker.broker.transactions import TransactionCoordinator, TxnError as E

TIMEOUT = 60_000


def init(coord: TransactionCoordinator, tid: str = "t", now: int = 0, timeout: int = TIMEOUT, **kw):
    """InitProducerId that must succeed; (producer id, epoch)."""
    result = coord.init_producer_id(tid, timeout, now, **kw)
    assert result.error is E.NONE, result
    return result.producer_id, result.producer_epoch


def begin(coord: TransactionCoordinator, tid: str, pid: int, epoch: int, now: int = 0,
          partitions=(("a", 0), ("b", 1)), tv: int = 0) -> None:
    """Add partitions; the transaction is Ongoing afterwards."""
    result = coord.add_partitions(tid, pid, epoch, partitions, now, client_version=tv)
    assert result.error is E.NONE, result


def finish(coord: TransactionCoordinator, result, tid: str = "t", now: int = 0):
    """Write the markers (nothing to do here) and complete the transaction."""
    assert result.markers, result
    done = coord.markers_written(tid, now)
    assert done.error is E.NONE, done
    return done


def state(coord: TransactionCoordinator, tid: str = "t") -> str:
    return coord.transaction(tid).state.value


def set_epoch(coord: TransactionCoordinator, epoch: int, tid: str = "t") -> None:
    """Jump the id's epoch in memory (to reach exhaustion without 32k round trips)."""
    coord._txns[tid] = replace(coord.transaction(tid), producer_epoch=epoch)
