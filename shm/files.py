"""File primitives shared by the engine and the appliance: holes, durable renames."""

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


def zero_range(fd: int, start: int, length: int) -> None:
    """Make [start, start+length) read as zeros, keeping the file's size.

    Shrinking a file that other processes map would make their reads past the
    new end fault (SIGBUS); punching a hole keeps every mapped page readable.
    Falls back to writing zeros where the filesystem cannot punch holes.
    """
    if length <= 0:
        return
    if _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, start, length) == 0:
        return
    err = ctypes.get_errno()
    if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
        raise OSError(err, os.strerror(err))
    zeros = bytes(min(length, 1 << 20))
    done = 0
    while done < length:
        done += os.pwrite(fd, zeros[: length - done], start + done)


def fsync_directory(directory: Path) -> None:
    """Make a file's creation, rename or removal durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a crash leaves the old or the new file,
    never a torn one: write a temporary file, fsync it, rename it over, fsync
    the directory."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)
