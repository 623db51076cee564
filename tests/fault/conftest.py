"""Shared machinery of the fault tests: child writers, log copies and read-back checks.

The fault tests damage real log directories the way crashes, torn writes and
bad disks do, recover them with PartitionLog.open and check what comes back.
Nothing here mocks the engine: writers are real processes (writer_process.py)
and every check reads the log through PartitionLog.read.
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shm.partition_log import LogConfig, PartitionLog
from shm.record_batch import BatchHeader, validate_record_set
from tests.fault.writer_process import generate_batch, record_count, stored_form

WRITER_SCRIPT = Path(__file__).with_name("writer_process.py")
SEGMENT_BYTES = 256 * 1024

__all__ = [
    "SEGMENT_BYTES",
    "LogCopy",
    "StoredBatch",
    "WriterProcess",
    "abandon_writer",
    "copy_log",
    "expected_batches",
    "open_log",
    "read_whole_log",
    "segment_files",
    "writer_command",
]


@dataclass(frozen=True)
class StoredBatch:
    """One batch as read back from a log: where it starts and its stored bytes."""

    header: BatchHeader
    data: bytes

    @property
    def base_offset(self) -> int:
        return self.header.base_offset

    @property
    def next_offset(self) -> int:
        return self.header.next_offset


def read_whole_log(log: PartitionLog, max_bytes: int = 1 << 20) -> list[StoredBatch]:
    """Every batch from log_start to log_end, checked as a consumer would need it.

    Asserts that the high watermark is the log end (recovery makes everything
    that survived durable), that each read returns only whole batches with a
    valid CRC-32C, that the first batch holds the offset asked for and that
    offsets run on without a gap or overlap up to exactly the log end.
    """
    start, end = log.log_start_offset, log.log_end_offset
    assert log.high_watermark == end, (
        f"after recovery the high watermark {log.high_watermark} should be the log end {end}"
    )
    batches: list[StoredBatch] = []
    offset = start
    for _ in range(end - start + 1):  # each read advances by at least one offset
        if offset >= end:
            break
        data = log.read(offset, max_bytes)
        assert data, f"read({offset}) returned nothing inside the log [{start}, {end})"
        headers = validate_record_set(data)  # whole, CRC-valid batches or CorruptRecordError
        assert headers[0].base_offset <= offset <= headers[0].last_offset, (
            f"read({offset}) began with the batch [{headers[0].base_offset}, "
            f"{headers[0].last_offset}], which does not hold it"
        )
        pos = 0
        for header in headers:
            if batches:
                assert header.base_offset == batches[-1].next_offset, (
                    f"offsets jump from {batches[-1].next_offset} to {header.base_offset}"
                )
            else:
                assert header.base_offset == start, (
                    f"the log starts at {start} but its first batch at {header.base_offset}"
                )
            batches.append(StoredBatch(header, data[pos : pos + header.size]))
            pos += header.size
        offset = batches[-1].next_offset
    assert offset == end, f"the batches end at offset {offset}, the log end is {end}"
    return batches


def expected_batches(seed: str, writer: int, start_offset: int, count: int,
                     **limits: int) -> list[tuple[int, bytes]]:
    """(base offset, stored bytes) of the first `count` batches writer_process
    appends for (seed, writer) when the log it opens ends at `start_offset`."""
    out = []
    offset = start_offset
    for index in range(count):
        batch = generate_batch(seed, writer, index, **limits)
        out.append((offset, stored_form(batch, offset)))
        offset += record_count(batch)
    return out


def open_log(directory: Path, config: LogConfig, ctl: Path) -> PartitionLog:
    return PartitionLog.open(directory, config, control_path=ctl)


def segment_files(directory: Path, suffix: str = ".log") -> list[Path]:
    """The segment files of a log with `suffix`, oldest first (names sort by offset)."""
    return sorted(p for p in directory.iterdir()
                  if p.name.endswith(suffix) and p.name.split(".")[0].isdigit())


@dataclass
class LogCopy:
    directory: Path
    ctl: Path


def copy_log(template: Path, destination: Path) -> LogCopy:
    """A private copy of a log directory (the .lock file is copied, not its flock)."""
    shutil.copytree(template, destination / "log")
    return LogCopy(destination / "log", destination / "ctl")


# --- child writers --------------------------------------------------------------------


def writer_command(mode: str, directory: Path, ctl: Path, seed: str, writer: int = 0,
                   **options: int | float) -> list[str]:
    cmd = [sys.executable, str(WRITER_SCRIPT), mode, "--dir", str(directory),
           "--ctl", str(ctl), "--seed", seed, "--writer", str(writer)]
    for name, value in options.items():
        cmd += ["--" + name.replace("_", "-"), str(value)]
    return cmd


def abandon_writer(directory: Path, ctl: Path, seed: str, count: int,
                   timeout_s: float = 60.0, **options: int | float) -> int:
    """Run a child that appends `count` batches, flushes and exits without close().
    Returns the log end offset it reported."""
    result = subprocess.run(
        writer_command("abandon", directory, ctl, seed, count=count, **options),
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )
    assert result.returncode == 0, f"writer failed ({result.returncode}):\n{result.stderr}"
    word, end = result.stdout.split()
    assert word == "done"
    return int(end)


class WriterProcess:
    """A streaming writer child and the lines it has printed, read without threads.

    Lines are collected with a selector and a deadline, so the parent never
    blocks on a child that has stopped talking and never sleeps to wait.
    """

    def __init__(self, directory: Path, ctl: Path, seed: str, writer: int,
                 stderr_path: Path, **options: int | float):
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 - closed in reap()
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(
            writer_command("stream", directory, ctl, seed, writer, **options),
            stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0,
        )
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)
        self._partial = b""
        self.lines: list[str] = []
        self._eof = False

    def _read_some(self, until: float) -> None:
        """Wait until output arrives (then take it) or the monotonic time `until`."""
        remaining = until - time.monotonic()
        if self._eof or remaining <= 0 or not self._selector.select(remaining):
            return
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            self._eof = True
            return
        self._partial += chunk
        *complete, self._partial = self._partial.split(b"\n")
        self.lines.extend(line.decode() for line in complete)

    def pump(self, until: float) -> None:
        """Collect output until the monotonic time `until` or end of output."""
        while not self._eof and time.monotonic() < until:
            self._read_some(until)

    def wait_ready(self, timeout_s: float = 30.0) -> int:
        """Block until the child has opened the log; return the log end it found."""
        deadline = time.monotonic() + timeout_s
        while not self.lines and not self._eof and time.monotonic() < deadline:
            self._read_some(deadline)
        if not self.lines:
            self.kill()
            raise AssertionError(f"writer never became ready:\n{self.stderr_text()}")
        word, end = self.lines[0].split()
        assert word == "ready", self.lines[0]
        return int(end)

    def run_for(self, seconds: float) -> None:
        """Let the child produce for `seconds` while draining its output."""
        self.pump(time.monotonic() + seconds)
        if self._eof or self.proc.poll() is not None:
            self.kill()
            raise AssertionError(
                f"writer exited on its own (status {self.proc.returncode}) before the kill:\n"
                f"{self.stderr_text()}"
            )

    def kill(self) -> None:
        """SIGKILL the child, reap it and read every complete line it printed."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not self._eof and time.monotonic() < deadline:
            self.pump(deadline)  # the pipe's write end is closed: EOF comes promptly
        assert self._eof, "the dead writer's stdout never reached EOF"
        self._selector.close()
        self.proc.stdout.close()
        self._stderr.close()

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def durable(self) -> list[tuple[int, int, int, int, str]]:
        """(index, base offset, record count, length, sha256) of each reported batch."""
        out = []
        for line in self.lines[1:]:
            word, *fields = line.split()
            assert word == "durable", line
            index, base, count, length = (int(f) for f in fields[:4])
            out.append((index, base, count, length, fields[4]))
        return out
