"""Our QueueConsumer (share groups) against a real broker."""

import trio

from logbroker.client import Admin, Producer
from logbroker.client.queue import QueueConsumer


def _broker(broker_factory, tmp_path, lock_ms=30_000):
    config = tmp_path / "share.toml"
    config.write_text(f"group_share_record_lock_duration_ms = {lock_ms}\n")
    return broker_factory("--config", str(config))


async def test_two_consumers_process_every_record_exactly_once(broker_factory, tmp_path):
    broker = _broker(broker_factory, tmp_path)
    async with Admin(broker.bootstrap) as admin:
        await admin.create_topic("jobs", 2)
    seen: dict[bytes, int] = {}
    async with QueueConsumer(broker.bootstrap, "jobs", group_id="workers") as first, \
            QueueConsumer(broker.bootstrap, "jobs", group_id="workers") as second:
        await _setup_after_join(broker.bootstrap)
        with trio.move_on_after(30):
            async with trio.open_nursery() as nursery:
                async def work(queue):
                    async for msg in queue:
                        seen[msg.value] = seen.get(msg.value, 0) + 1
                        await msg.ack()
                        if len(seen) == 400:
                            nursery.cancel_scope.cancel()
                nursery.start_soon(work, first)
                nursery.start_soon(work, second)
    assert len(seen) == 400 and set(seen.values()) == {1}


async def _setup_after_join(bootstrap):
    # Share groups start at the latest offset by default: produce after joining.
    await trio.sleep(0.5)
    async with Producer(bootstrap) as producer:
        for i in range(400):
            producer.send_nowait("jobs", b"job-%d" % i, partition=i % 2)


async def test_release_redelivers_reject_archives_close_releases(broker_factory, tmp_path):
    broker = _broker(broker_factory, tmp_path)
    async with Admin(broker.bootstrap) as admin:
        await admin.create_topic("tasks", 1)
    with trio.fail_after(60):
        async with QueueConsumer(broker.bootstrap, "tasks", group_id="g") as queue:
            await trio.sleep(0.5)
            async with Producer(broker.bootstrap) as producer:
                for i in range(3):
                    producer.send_nowait("tasks", b"t%d" % i)
            first = [await queue.get() for _ in range(3)]
            assert [m.delivery_count for m in first] == [1, 1, 1]
            await first[0].release()
            await first[1].reject()
            await first[2].ack()
            again = await queue.get()
            assert (again.value, again.delivery_count) == (b"t0", 2)
            # Closing with `again` unanswered releases it for the next member.
        async with QueueConsumer(broker.bootstrap, "tasks", group_id="g") as other:
            msg = await other.get()
            assert (msg.value, msg.delivery_count) == (b"t0", 3)
            await msg.ack()
            with trio.move_on_after(1.5):
                extra = await other.get()
                raise AssertionError(f"nothing else should come back, got {extra}")


async def test_a_long_handler_keeps_its_lock(broker_factory, tmp_path):
    broker = _broker(broker_factory, tmp_path, lock_ms=2_000)
    async with Admin(broker.bootstrap) as admin:
        await admin.create_topic("slow", 1)
    with trio.fail_after(60):
        async with QueueConsumer(broker.bootstrap, "slow", group_id="s") as holder:
            await trio.sleep(0.5)
            async with Producer(broker.bootstrap) as producer:
                await producer.send_and_wait("slow", b"big job")
            msg = await holder.get()
            # A second member joins while the first still works on the record.
            async with QueueConsumer(broker.bootstrap, "slow", group_id="s") as thief:
                stolen = None
                with trio.move_on_after(5):  # well past the 2 s lock
                    stolen = await thief.get()
                assert stolen is None, "the lock was renewed while the handler ran"
                await msg.ack()


def test_sync_queue_consumer(broker_factory, tmp_path):
    import pytest

    from logbroker.client import SyncAdmin, SyncProducer
    from logbroker.client.queue import SyncQueueConsumer
    from logbroker.errors import KafkaTimeoutError

    broker = _broker(broker_factory, tmp_path)
    with SyncAdmin(broker.bootstrap) as admin:
        admin.create_topic("sync-jobs", 1, timeout=10)
    with SyncQueueConsumer(broker.bootstrap, "sync-jobs", group_id="sync") as queue:
        import time
        time.sleep(0.5)
        with SyncProducer(broker.bootstrap) as producer:
            producer.send("sync-jobs", b"a").result(timeout=10)
        msg = queue.get(timeout=10)
        assert msg.value == b"a" and msg.delivery_count == 1
        msg.ack(timeout=5)
        with pytest.raises(KafkaTimeoutError):
            queue.get(timeout=1)


def test_cli_queue_consume(broker_factory, tmp_path):
    import json
    import subprocess
    import sys
    import time

    from logbroker.client import SyncAdmin, SyncProducer

    broker = _broker(broker_factory, tmp_path)
    with SyncAdmin(broker.bootstrap) as admin:
        admin.create_topic("cli-jobs", 1, timeout=10)
    proc = subprocess.Popen([sys.executable, "-m", "logbroker", "queue", "consume", "cli-jobs", "-g", "cli",
                             "-n", "3", "--format", "json", "-b", broker.bootstrap],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # share groups start at the latest offset: join first
        with SyncProducer(broker.bootstrap) as producer:
            for i in range(3):
                producer.send("cli-jobs", b"job-%d" % i).result(timeout=10)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["value"] for r in rows] == ["job-0", "job-1", "job-2"]
    assert proc.returncode == 0
