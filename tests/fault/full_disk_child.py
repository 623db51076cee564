"""Run inside a private mount namespace on a tiny tmpfs: fill it, then check the log.

Prints one JSON line with what it saw; exits non-zero if an assertion fails.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import orjson

from shm.errors import KafkaStorageError
from shm.partition_log import LogConfig, PartitionLog
from shm.records import Record, encode_batch

CONFIG = LogConfig(segment_bytes=256 * 1024)


def stored_digest(log: PartitionLog, offset: int) -> str:
    return hashlib.sha256(log.read(offset, 1)[16:]).hexdigest()  # past the stamped prefix


def main(root: Path) -> None:
    log = PartitionLog.open(root / "topic-0", CONFIG, control_path=root / "topic-0.ctl")
    acked: dict[int, str] = {}
    refusals = 0
    for i in range(2_000):  # bounded: the disk is full long before this
        batch = encode_batch([Record(value=bytes([i % 251]) * 8_000, key=b"k%d" % i)])
        end_before = log.log_end_offset
        try:
            base = log.append(batch)
            log.flush()
        except KafkaStorageError:
            refusals += 1
            assert log.log_end_offset == end_before, "a refused append moved the log end"
            if refusals >= 5:
                break
            continue
        acked[base] = hashlib.sha256(batch[16:]).hexdigest()
    assert refusals >= 5, "the disk never filled"
    for offset, digest in acked.items():
        assert stored_digest(log, offset) == digest, f"acked batch at {offset} changed"
    end = log.log_end_offset
    log.close()
    log = PartitionLog.open(root / "topic-0", CONFIG, control_path=root / "topic-0.ctl")
    assert log.log_end_offset == end
    for offset, digest in acked.items():
        assert stored_digest(log, offset) == digest, f"acked batch at {offset} lost on reopen"
    log.close()
    print(orjson.dumps({"acked": len(acked), "refusals": refusals, "end": end}).decode())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
