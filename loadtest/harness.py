"""What every benchmark here shares: a work directory on a real disk, its
file system, progress on a terminal, and plain-text tables."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

MiB = 1 << 20


class NotEnoughSpace(Exception):
    """The work directory's file system cannot hold the benchmark's data."""


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so the work directory is still removed


@contextlib.contextmanager
def work_directory(parent: Path | None, prefix: str, need_bytes: int) -> Iterator[Path]:
    """A temporary directory under `parent` (default ./.bench), removed at the
    end, even on SIGTERM; warns on tmpfs, where fdatasync costs nothing."""
    default = None
    if parent is None:
        parent = default = Path.cwd() / ".bench"
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        fstype = fs_of(workdir)[0]
        if fstype in ("tmpfs", "ramfs"):
            print(f"warning: {workdir} is on {fstype}: fdatasync costs nothing there, "
                  "pass --dir on a disk filesystem", file=sys.stderr)
        free = shutil.disk_usage(workdir).free
        if free < need_bytes:
            raise NotEnoughSpace(f"{workdir} has {free // MiB} MiB free, the bench needs "
                                 f"about {need_bytes // MiB} MiB")
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if default is not None:
            with contextlib.suppress(OSError):  # not empty: another run is using it
                default.rmdir()


def progress(message: str) -> None:
    """One self-overwriting status line, only on a terminal."""
    if sys.stderr.isatty():
        print(f"\r\033[K{message}", end="", file=sys.stderr, flush=True)


def table(rows: Iterable[Iterable[str]], header: list[str], text_columns: int = 1) -> str:
    """Columns padded to width: the first `text_columns` left-aligned, numbers right."""
    rows = [list(r) for r in rows]
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    lines = []
    for i, row in enumerate([header, *rows]):
        cells = [c.ljust(w) if j < text_columns else c.rjust(w)
                 for j, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fs_of(path: Path) -> tuple[str, str, str]:
    """(filesystem type, device, mount point) holding `path`, from /proc/self/mounts."""
    real = os.path.realpath(path)
    best, best_len = ("?", "?", "/"), -1
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                device, mount, fstype = line.split()[:3]
                mount = mount.replace("\\040", " ")
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= best_len:
                    best, best_len = (fstype, device, mount), len(mount)
    except OSError:
        pass
    return best


def machine(workdir: Path) -> dict:
    """The machine a run's figures belong to, for its --json output."""
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "kernel": platform.release(), "fs": fs_of(workdir)}
