"""A small filesystem for full-disk tests: a real tmpfs when this process may mount one (root, as in CI),
else an emulated one over the folder (free space and ENOSPC computed from what the folder holds), so
the tests run either way."""

from __future__ import annotations

import errno
import gc
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from transfers.engine.storage import LocalStorage


@contextmanager
def limited_disk(folder: Path, size: int, monkeypatch: pytest.MonkeyPatch, *, emulated: bool = False) -> Iterator[bool]:
    """`folder` holds at most `size` bytes; yields whether it is a real tmpfs (emulated=True: never)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = not emulated and _mount_tmpfs(folder, size)
    if not mounted:
        _emulate(folder, size, monkeypatch)
    try:
        yield mounted
    finally:
        if mounted:
            gc.collect()  # endpoints left in a test's exception cycles hold descriptors of the folder: close them
            subprocess.run(["umount", str(folder)], check=True)


def _mount_tmpfs(folder: Path, size: int) -> bool:
    try:
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
        return subprocess.run(command, capture_output=True).returncode == 0
    except OSError:  # no mount command here
        return False


def _emulate(folder: Path, limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"{folder}/"

    def count() -> int:
        while True:
            try:
                return sum(-(-path.stat().st_size // 4096) * 4096 for path in folder.rglob("*") if path.is_file())
            except FileNotFoundError:
                continue  # renamed into place or removed while counted: count again

    def used() -> int:
        # A real filesystem answers at once; a walk can miss a file renamed while it lists (the budget would
        # then let a file start that does not fit). Of two walks, at most one misses a given rename.
        return max(count(), count())

    def inside(fd: int) -> bool:
        return os.readlink(f"/proc/self/fd/{fd}").startswith(prefix)

    real_pwrite, real_copy, real_free = os.pwrite, os.copy_file_range, LocalStorage.free_space

    def pwrite(fd: int, data: Any, position: int) -> int:
        if inside(fd) and used() + len(data) > limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, position)

    def copy_file_range(src: int, dst: int, count: int, offset_src: int | None = None, offset_dst: int | None = None) -> int:
        if inside(dst) and used() + count > limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(src, dst, count, offset_src, offset_dst)

    def free_space(self: LocalStorage) -> int:
        return max(0, limit - used()) if f"{self.root}/".startswith(prefix) else real_free(self)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    monkeypatch.setattr(LocalStorage, "free_space", free_space)
