"""Two writers, a replaced partial, a source saved by rename: none of them may store the wrong bytes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from tests.engine.test_send import SERVER, Wrapped, _final, _partial, _send
from transfers.engine.send import SendFailed
from transfers.engine.storage import LocalStorage, VerifyFailed


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src.bin"
    path.write_bytes(os.urandom(300_000))
    return path


def test_a_second_writer_of_the_same_server_path_is_told_busy(src: Path, storage: LocalStorage) -> None:
    with storage.open_partial(SERVER, 0), pytest.raises(SendFailed) as failed:
        _send(src, storage)

    assert (failed.value.code, failed.value.retryable) == ("busy", True)
    assert not _final(storage).exists()


def test_the_lock_is_released_once_the_file_is_in_place(src: Path, storage: LocalStorage) -> None:
    _send(src, storage)

    with storage.open_partial(SERVER, 0) as handle:  # would raise PartialBusy if still held
        assert handle.tell() == 0


def test_finalize_refuses_a_partial_replaced_under_the_writer(storage: LocalStorage) -> None:
    with storage.open_partial(SERVER, 0) as handle:
        handle.write(b"mine")
        partial = _partial(storage)
        partial.unlink()
        partial.write_bytes(b"them")

        with pytest.raises(VerifyFailed, match="replaced"):
            storage.finalize(SERVER, size=4, checksum="xxh3-128:00", handle=handle)
    assert not _final(storage).exists()


def test_a_source_saved_by_rename_during_the_send_is_sent_again(src: Path, storage: LocalStorage, tmp_path: Path) -> None:
    saved = tmp_path / "saved.bin"
    saved.write_bytes(os.urandom(300_000))

    def save_over_it(count: int, resumed: bool) -> None:
        if saved.exists():
            os.replace(saved, src)  # what editors do: write a new file, rename it over the old one

    with pytest.raises(SendFailed) as failed:
        _send(src, storage, on_bytes=save_over_it)

    assert (failed.value.code, failed.value.retryable) == ("source_changed", True)
    assert not _final(storage).exists()


def test_the_recorded_mtime_is_the_one_read_before_sending(src: Path, storage: LocalStorage) -> None:
    before = src.stat().st_mtime_ns

    class TouchDuringFinalize(Wrapped):
        def finalize(self, path: str, *, size: int, checksum: str, handle: BinaryIO, verified: Any = None) -> None:
            os.utime(src, ns=(before + 10**9, before + 10**9))  # saved again, same size, after the checks
            self.inner.finalize(path, size=size, checksum=checksum, handle=handle, verified=verified)

    sent = _send(src, TouchDuringFinalize(storage))

    assert sent.mtime_ns == before  # the next run sees a different mtime and re-hashes
