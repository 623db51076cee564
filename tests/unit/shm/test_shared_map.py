"""shm.shared_map: a shared map that holds no descriptor (Python's mmap keeps one per map)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shm.shared_map import SharedMap


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_maps_hold_no_descriptor_and_see_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 8192)
    before = open_descriptors()
    maps = []
    for _ in range(50):
        fd = os.open(path, os.O_RDONLY)
        maps.append(SharedMap(fd, 8192))
        os.close(fd)
    assert open_descriptors() == before
    with open(path, "r+b") as f:  # a write through the file shows in every map
        f.seek(100)
        f.write(b"hello")
    assert all(bytes(m.view[100:105]) == b"hello" and len(m) == 8192 for m in maps)
    for m in maps:
        m.close()
        m.close()  # idempotent


def test_a_writable_map_writes_the_file_and_a_closed_one_refuses_use(tmp_path: Path) -> None:
    path = tmp_path / "g"
    path.write_bytes(bytes(128))
    fd = os.open(path, os.O_RDWR)
    shared = SharedMap(fd, 128, writable=True)
    os.close(fd)
    words = shared.view.cast("q")
    words[3] = 42
    words.release()
    assert int.from_bytes(path.read_bytes()[24:32], "little") == 42
    shared.close()
    with pytest.raises(ValueError):
        shared.view[0]  # released before the unmap: an error, never a wild read


def test_read_only_maps_cannot_be_written_and_empty_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "h"
    path.write_bytes(bytes(64))
    fd = os.open(path, os.O_RDONLY)
    try:
        shared = SharedMap(fd, 64)
        with pytest.raises(TypeError):
            shared.view[0] = 1
        shared.close()
        with pytest.raises(ValueError):
            SharedMap(fd, 0)
    finally:
        os.close(fd)
