"""Child process for test_durability: append + flush forever, report fsynced offsets.

argv: data_dir seed. Each line written to stdout is an offset below which
everything was fsynced (flush returned). Every record's value starts with
its own offset in ASCII, so the parent can check content after recovery.
"""

import random
import sys
import threading

from logbroker.records import build_batch
from logbroker.storage import LogConfig, LogManager, LogManagerConfig


def main() -> None:
    data_dir, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    config = LogManagerConfig(flush="always", log=LogConfig(segment_bytes=64 * 1024, index_interval_bytes=512))
    manager = LogManager(data_dir, config, now_ms=0)
    if "t" not in manager.topics():
        manager.create_topic("t", 1)
    log = manager.get_partition("t", 0)
    out = sys.stdout
    lock = threading.Lock()
    while True:
        end = log.log_end_offset
        count = rng.randint(1, 20)
        size = rng.randint(1, 3000)
        records = [(None, (b"%d:" % (end + i)).ljust(size, b"x"), (), end + i) for i in range(count)]
        info = log.append(build_batch(records), now_ms=0)
        threads = [threading.Thread(target=log.flush, args=(info.last_offset + 1,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with lock:
            out.write(f"{info.last_offset + 1}\n")
            out.flush()


if __name__ == "__main__":
    main()
