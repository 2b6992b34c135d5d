"""copy_file: bytes arrive whole under the final name, or nothing does; every failure has a stable code."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import xxhash

from tests.conftest import wait_for
from transfers.engine import copy as copy_module
from transfers.engine.copy import CopyFailed, Stopped, copy_file, partial_path

_real_open = open


def _always(_count: int) -> bool:
    return True


def _watching(look: Callable[[], Any], into: list[Any]) -> Callable[[int], bool]:
    """An on_bytes that records `look()` at every chunk and lets the copy go on."""

    def on_bytes(_count: int) -> bool:
        into.append(look())
        return True

    return on_bytes


def _source(tmp_path: Path, content: bytes, name: str = "a.exr") -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Four-byte chunks, so a short file takes many reads and writes."""
    monkeypatch.setattr(copy_module, "CHUNK_SIZE", 4)
    return 4


class _DiskFullAfter:
    """A destination file whose writes fail with ENOSPC once `allowed` writes have gone through."""

    def __init__(self, real: Any, allowed: int) -> None:
        self._real = real
        self._allowed = allowed
        self.partial_existed_when_full = False

    def write(self, data: Any) -> int:
        if self._allowed == 0:
            self.partial_existed_when_full = Path(self._real.name).exists()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._allowed -= 1
        return int(self._real.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __enter__(self) -> _DiskFullAfter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()


def test_copy_file_delivers_identical_bytes(tmp_path: Path) -> None:
    content = os.urandom(copy_module.CHUNK_SIZE * 2 + 12345)
    dest = tmp_path / "storage" / "a.exr"

    copy_file(_source(tmp_path, content), dest, on_bytes=_always)

    assert dest.read_bytes() == content


def test_copy_file_returns_the_size_and_xxh3_128_checksum_of_the_content(tmp_path: Path) -> None:
    content = os.urandom(300_000)

    copied = copy_file(_source(tmp_path, content), tmp_path / "storage" / "a.exr", on_bytes=_always)

    assert copied.size == len(content)
    assert copied.checksum == xxhash.xxh3_128(content).hexdigest()


def test_copy_file_copies_an_empty_file(tmp_path: Path) -> None:
    dest = tmp_path / "storage" / "empty.exr"

    copied = copy_file(_source(tmp_path, b""), dest, on_bytes=_always)

    assert (dest.read_bytes(), copied.size, copied.checksum) == (b"", 0, xxhash.xxh3_128(b"").hexdigest())


def test_copy_file_creates_missing_destination_folders(tmp_path: Path) -> None:
    dest = tmp_path / "storage" / "D" / "shots" / "010" / "a.exr"

    copy_file(_source(tmp_path, b"frame"), dest, on_bytes=_always)

    assert dest.read_bytes() == b"frame"


def test_copy_file_leaves_no_partial_file_after_success(tmp_path: Path) -> None:
    dest = tmp_path / "storage" / "a.exr"

    copy_file(_source(tmp_path, b"frame"), dest, on_bytes=_always)

    assert not partial_path(dest).exists()
    assert [p.name for p in dest.parent.iterdir()] == ["a.exr"]


def test_copy_file_reports_every_byte_to_on_bytes(tmp_path: Path, small_chunks: int) -> None:
    counts: list[int] = []

    def on_bytes(count: int) -> bool:
        counts.append(count)
        return True

    copy_file(_source(tmp_path, b"x" * 41), tmp_path / "storage" / "a.exr", on_bytes=on_bytes)

    assert sum(counts) == 41
    assert max(counts) == small_chunks


def test_copy_file_writes_through_the_partial_name_first(tmp_path: Path, small_chunks: int) -> None:
    dest = tmp_path / "storage" / "a.exr"
    seen: list[tuple[bool, bool]] = []

    copy_file(_source(tmp_path, b"x" * 16), dest, on_bytes=_watching(lambda: (partial_path(dest).exists(), dest.exists()), seen))

    assert seen and all(state == (True, False) for state in seen)


def test_copy_file_replaces_an_existing_destination_atomically(tmp_path: Path, small_chunks: int) -> None:
    dest = tmp_path / "storage" / "a.exr"
    dest.parent.mkdir()
    dest.write_bytes(b"old version")
    seen_during_copy: list[bytes] = []

    copy_file(_source(tmp_path, b"new version, longer"), dest, on_bytes=_watching(dest.read_bytes, seen_during_copy))

    assert seen_during_copy and set(seen_during_copy) == {b"old version"}
    assert dest.read_bytes() == b"new version, longer"
    assert not partial_path(dest).exists()


def test_copy_file_fails_a_missing_source_as_missing_source(tmp_path: Path) -> None:
    src = tmp_path / "src" / "gone.exr"
    dest = tmp_path / "storage" / "gone.exr"

    with pytest.raises(CopyFailed) as failed:
        copy_file(src, dest, on_bytes=_always)

    assert (failed.value.code, str(failed.value)) == ("missing_source", f"local file not found: {src}")
    assert not dest.parent.exists()


def test_copy_file_fails_a_folder_as_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "src" / "shots"
    folder.mkdir(parents=True)

    with pytest.raises(CopyFailed) as failed:
        copy_file(folder, tmp_path / "storage" / "shots", on_bytes=_always)

    assert failed.value.code == "not_a_file"
    assert str(folder) in str(failed.value)


def test_copy_file_fails_an_unreadable_source_as_permission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, where chmod 0 does not stop a read: refuse the open instead.
    src = _source(tmp_path, b"secret")

    real_os_open = os.open

    def refusing_open(file: Any, flags: int, *args: Any, **kwargs: Any) -> Any:
        if Path(file) == src:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_os_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(copy_module.os, "open", refusing_open)

    with pytest.raises(CopyFailed) as failed:
        copy_file(src, tmp_path / "storage" / "a.exr", on_bytes=_always)

    assert (failed.value.code, str(failed.value)) == ("permission", f"permission denied reading {src}")


def test_copy_file_fails_a_full_disk_as_disk_full_and_removes_the_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_chunks: int
) -> None:
    src = _source(tmp_path, b"x" * 64)
    dest = tmp_path / "storage" / "a.exr"
    targets: list[_DiskFullAfter] = []

    def filling_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        real = _real_open(file, mode, *args, **kwargs)
        if "w" not in mode:
            return real
        targets.append(_DiskFullAfter(real, allowed=2))
        return targets[-1]

    monkeypatch.setattr(copy_module, "open", filling_open, raising=False)

    with pytest.raises(CopyFailed) as failed:
        copy_file(src, dest, on_bytes=_always)

    assert (failed.value.code, failed.value.retryable) == ("disk_full", True)
    assert targets[0].partial_existed_when_full
    assert not partial_path(dest).exists()
    assert not dest.exists()


def test_copy_file_stops_when_on_bytes_returns_false_and_leaves_nothing_behind(tmp_path: Path, small_chunks: int) -> None:
    dest = tmp_path / "storage" / "a.exr"
    partial_seen: list[bool] = []

    def stop_on_third_chunk(_count: int) -> bool:
        partial_seen.append(partial_path(dest).exists())
        return len(partial_seen) < 3

    with pytest.raises(Stopped):
        copy_file(_source(tmp_path, b"x" * 64), dest, on_bytes=stop_on_third_chunk)

    assert partial_seen == [True, True, True]
    assert not partial_path(dest).exists()
    assert not dest.exists()


def test_copy_file_stopped_midway_keeps_the_existing_destination(tmp_path: Path, small_chunks: int) -> None:
    dest = tmp_path / "storage" / "a.exr"
    dest.parent.mkdir()
    dest.write_bytes(b"old version")

    with pytest.raises(Stopped):
        copy_file(_source(tmp_path, b"x" * 64), dest, on_bytes=lambda _n: False)

    assert dest.read_bytes() == b"old version"


def test_copy_file_fails_a_fifo_as_not_a_file_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "src" / "pipe"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    codes: list[str] = []

    def copy() -> None:
        try:
            copy_file(fifo, tmp_path / "storage" / "pipe", on_bytes=_always)
        except CopyFailed as exc:
            codes.append(exc.code)

    worker = threading.Thread(target=copy, daemon=True)
    worker.start()
    try:
        wait_for(lambda: not worker.is_alive(), timeout=5, what="copy_file to give up on a FIFO with no writer")
    finally:
        if worker.is_alive():  # let the blocked open() return, so the thread ends with the test
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            worker.join(5)

    assert codes == ["not_a_file"]
