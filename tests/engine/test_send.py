"""send_file: one file into a storage backend, hashed while sending, verified before the rename,
resumable, rate-limited, in parallel ranges when large; every failure classified (issue 3 items 4, 5).
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import xxhash

from transfers.engine import hashing
from transfers.engine import send as send_module
from transfers.engine.ratelimit import TokenBucket
from transfers.engine.send import SendFailed, SendOptions, Sent, Stopped, send_file
from transfers.engine.storage import PARTIAL_SUFFIX, LocalStorage

SERVER = "D/shots/a.bin"
KIB = 1 << 10
# Small chunks so a 1 MiB file moves in many steps; streams below 256 KiB, ranges of 64 KiB above.
STREAM = SendOptions(chunk=64 * KIB, kernel_chunk=64 * KIB)
RANGED = SendOptions(chunk=16 * KIB, kernel_chunk=16 * KIB, range_size=64 * KIB, range_threshold=256 * KIB, ranges_in_parallel=4)


class Progress:
    """An on_bytes callback that keeps every call and may act after each (change the source, stop...)."""

    def __init__(self, then: Callable[[Progress], None] | None = None) -> None:
        self.calls: list[tuple[int, bool]] = []
        self.then = then
        self.lock = threading.Lock()

    def __call__(self, count: int, resumed: bool) -> None:
        with self.lock:
            self.calls.append((count, resumed))
        if self.then is not None:
            self.then(self)

    @property
    def sent(self) -> int:
        return sum(count for count, resumed in self.calls if not resumed)

    @property
    def resumed(self) -> int:
        return sum(count for count, resumed in self.calls if resumed)


class Wrapped:
    """A Storage that delegates everything to a LocalStorage; subclasses override one method to misbehave."""

    def __init__(self, inner: LocalStorage) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def data() -> bytes:
    return os.urandom((1 << 20) + 123)


@pytest.fixture
def src(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    return path


def _send(
    src: Path,
    storage: Any,
    *,
    bucket: TokenBucket | None = None,
    stop: threading.Event | None = None,
    on_bytes: Callable[[int, bool], None] | None = None,
    options: SendOptions = STREAM,
) -> Sent:
    return send_file(
        src,
        storage,
        SERVER,
        bucket=bucket or TokenBucket(None),
        stop=stop or threading.Event(),
        on_bytes=on_bytes or Progress(),
        options=options,
    )


def _final(storage: LocalStorage) -> Path:
    return storage.root / SERVER


def _partial(storage: LocalStorage) -> Path:
    final = _final(storage)
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")


def _plain(data: bytes) -> str:
    return f"xxh3-128:{xxhash.xxh3_128(data).hexdigest()}"


def _ranged(data: bytes, size: int) -> str:
    return hashing.ranged(size, (xxhash.xxh3_128(data[s : s + size]).digest() for s in range(0, len(data), size)))


def _write_partial(storage: LocalStorage, content: bytes) -> None:
    with storage.open_partial(SERVER, 0) as handle:
        handle.write(content)


def _failure(call: Callable[[], object]) -> SendFailed:
    with pytest.raises(SendFailed) as failed:
        call()
    return failed.value


@pytest.fixture
def kernel_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes moved by each copy_file_range call."""
    moved: list[int] = []
    real = os.copy_file_range

    def spy(*args: Any) -> int:
        count = real(*args)
        moved.append(count)
        return count

    monkeypatch.setattr(os, "copy_file_range", spy)
    return moved


@pytest.fixture
def written_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes written by each pwrite call (the userspace path)."""
    written: list[int] = []
    real = os.pwrite

    def spy(fd: int, data: Any, position: int) -> int:
        count = real(fd, data, position)
        written.append(count)
        return count

    monkeypatch.setattr(os, "pwrite", spy)
    return written


# delivering


def test_send_file_delivers_identical_bytes(src: Path, storage: LocalStorage, data: bytes) -> None:
    _send(src, storage)

    assert _final(storage).read_bytes() == data


def test_send_file_checksum_is_the_xxh3_128_of_the_content(src: Path, storage: LocalStorage, data: bytes) -> None:
    assert _send(src, storage).checksum == _plain(data)


def test_send_file_returns_the_size_sent(src: Path, storage: LocalStorage, data: bytes) -> None:
    sent = _send(src, storage)

    assert (sent.size, sent.checksum, sent.resumed_from, sent.mtime_ns) == (len(data), _plain(data), 0, src.stat().st_mtime_ns)


def test_send_file_reports_every_byte_once_and_none_resumed(src: Path, storage: LocalStorage, data: bytes) -> None:
    progress = Progress()

    _send(src, storage, on_bytes=progress)

    assert (progress.sent, progress.resumed) == (len(data), 0)


def test_send_file_leaves_only_the_final_file(src: Path, storage: LocalStorage) -> None:
    _send(src, storage)

    assert [p.relative_to(storage.root).as_posix() for p in storage.root.rglob("*") if p.is_file()] == [SERVER]


def test_send_file_delivers_an_empty_file(tmp_path: Path, storage: LocalStorage) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")

    sent = _send(empty, storage)

    assert (sent.checksum, _final(storage).read_bytes()) == (_plain(b""), b"")


def test_send_file_replaces_an_older_file_at_the_destination(src: Path, storage: LocalStorage, data: bytes) -> None:
    _final(storage).parent.mkdir(parents=True)
    _final(storage).write_bytes(b"old")

    _send(src, storage)

    assert _final(storage).read_bytes() == data


def test_send_file_uses_the_kernel_copy_without_a_speed_limit(
    src: Path, storage: LocalStorage, data: bytes, kernel_bytes: list[int]
) -> None:
    _send(src, storage)

    assert sum(kernel_bytes) == len(data)


def test_send_file_copies_in_userspace_when_kernel_copy_is_off(
    src: Path, storage: LocalStorage, data: bytes, kernel_bytes: list[int], written_bytes: list[int]
) -> None:
    sent = _send(src, storage, options=SendOptions(chunk=64 * KIB, kernel_copy=False))

    assert (kernel_bytes, sum(written_bytes)) == ([], len(data))
    assert (sent.checksum, _final(storage).read_bytes()) == (_plain(data), data)


def test_send_file_copies_in_userspace_under_a_speed_limit(
    src: Path, storage: LocalStorage, data: bytes, kernel_bytes: list[int], written_bytes: list[int]
) -> None:
    sent = _send(src, storage, bucket=TokenBucket(1e12))

    assert (kernel_bytes, sum(written_bytes)) == ([], len(data))
    assert (sent.checksum, _final(storage).read_bytes()) == (_plain(data), data)


def test_send_file_falls_back_to_read_and_write_when_the_kernel_copy_is_refused(
    src: Path, storage: LocalStorage, data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(*args: Any) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", cross_device)

    sent = _send(src, storage)

    assert (sent.checksum, _final(storage).read_bytes()) == (_plain(data), data)


class CountingBucket(TokenBucket):
    def __init__(self, rate: float | None) -> None:
        super().__init__(rate)
        self.taken = 0

    def take(self, count: int, stop: threading.Event | None = None) -> bool:
        self.taken += count
        return super().take(count, stop)


def test_send_file_passes_every_chunk_through_the_bucket_under_a_limit(src: Path, storage: LocalStorage, data: bytes) -> None:
    bucket = CountingBucket(1e12)

    _send(src, storage, bucket=bucket)

    assert bucket.taken == len(data)


def test_send_file_under_a_limit_asks_for_a_tenth_of_a_second_of_allowance_at_most(src: Path, storage: LocalStorage) -> None:
    # A wait is never longer than that, so a new limit (or a stop) applies within it. The limit is
    # lifted after the first chunk to keep the test fast.
    bucket = CountingBucket(100 * KIB)
    progress = Progress(then=lambda p: bucket.set_rate(1e12) if len(p.calls) == 1 else None)

    _send(src, storage, bucket=bucket, on_bytes=progress)

    assert progress.calls[0][0] == 10 * KIB


def test_send_file_applies_a_speed_limit_set_during_a_kernel_copy(src: Path, storage: LocalStorage, data: bytes) -> None:
    # Control.set_max_speed on a running job: the rest of a file already being sent must obey it.
    bucket = CountingBucket(None)
    progress = Progress(then=lambda p: bucket.set_rate(1e12) if len(p.calls) == 1 else None)

    _send(src, storage, bucket=bucket, on_bytes=progress)

    assert bucket.taken == len(data) - progress.calls[0][0]


# parallel ranges


def test_send_file_in_ranges_delivers_identical_bytes(src: Path, storage: LocalStorage, data: bytes) -> None:
    _send(src, storage, options=RANGED)

    assert _final(storage).read_bytes() == data


def test_send_file_in_ranges_gives_the_ranged_checksum(src: Path, storage: LocalStorage, data: bytes) -> None:
    sent = _send(src, storage, options=RANGED)

    assert sent.checksum == _ranged(data, 64 * KIB)
    assert sent.checksum.startswith("xxh3-128/r65536:")


def test_send_file_in_ranges_checksum_matches_the_file_at_the_destination(src: Path, storage: LocalStorage) -> None:
    sent = _send(src, storage, options=RANGED)

    assert hashing.file_checksum(_final(storage), like=sent.checksum) == sent.checksum


def test_send_file_in_ranges_reports_every_byte_once(src: Path, storage: LocalStorage, data: bytes) -> None:
    progress = Progress()

    _send(src, storage, on_bytes=progress, options=RANGED)

    assert (progress.sent, progress.resumed) == (len(data), 0)


def test_send_file_in_ranges_under_a_speed_limit_delivers_identical_bytes(
    src: Path, storage: LocalStorage, data: bytes, kernel_bytes: list[int]
) -> None:
    sent = _send(src, storage, bucket=TokenBucket(1e12), options=RANGED)

    assert kernel_bytes == []
    assert (sent.checksum, _final(storage).read_bytes()) == (_ranged(data, 64 * KIB), data)


def test_send_file_in_ranges_leaves_no_marker_behind(src: Path, storage: LocalStorage) -> None:
    _send(src, storage, options=RANGED)

    assert storage.read_marker(SERVER) is None


def test_send_file_in_ranges_on_a_disk_too_full_for_the_marker_fails_as_disk_full(src: Path, storage: LocalStorage) -> None:
    class NoRoomForMarkers(Wrapped):
        def write_marker(self, path: str, data: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(SendFailed) as failed:
        _send(src, NoRoomForMarkers(storage), options=RANGED)

    assert (failed.value.code, failed.value.stops_run) == ("disk_full", True)


def test_send_file_below_the_range_threshold_streams_with_a_plain_checksum(tmp_path: Path, storage: LocalStorage) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * (256 * KIB - 1))

    assert _send(small, storage, options=RANGED).checksum == _plain(b"s" * (256 * KIB - 1))


def test_send_file_at_the_range_threshold_goes_in_ranges(tmp_path: Path, storage: LocalStorage) -> None:
    exact = tmp_path / "exact.bin"
    exact.write_bytes(b"r" * (256 * KIB))

    assert _send(exact, storage, options=RANGED).checksum == _ranged(b"r" * (256 * KIB), 64 * KIB)


def test_send_file_in_ranges_stops_starting_ranges_after_one_failed(
    src: Path, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk must not be hammered by every remaining range of a large file.
    attempted: set[int] = set()

    def full(fd: int, data: Any, position: int) -> int:
        attempted.add(position // (64 * KIB))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    options = SendOptions(chunk=16 * KIB, range_size=64 * KIB, range_threshold=256 * KIB, ranges_in_parallel=2, kernel_copy=False)

    assert _failure(lambda: _send(src, storage, options=options)).code == "disk_full"
    assert len(attempted) <= 4, f"{len(attempted)} of 17 ranges were started after the first failed"


# resume


def test_send_file_resume_reports_the_verified_prefix_as_resumed(src: Path, storage: LocalStorage, data: bytes) -> None:
    _write_partial(storage, data[:300_000])
    progress = Progress()

    _send(src, storage, on_bytes=progress)

    assert progress.calls[0] == (300_000, True)
    assert (progress.resumed, progress.sent) == (300_000, len(data) - 300_000)


def test_send_file_resume_sends_only_the_rest(src: Path, storage: LocalStorage, data: bytes, kernel_bytes: list[int]) -> None:
    _write_partial(storage, data[:300_000])

    _send(src, storage)

    assert sum(kernel_bytes) == len(data) - 300_000


def test_send_file_resume_delivers_identical_bytes_and_checksum(src: Path, storage: LocalStorage, data: bytes) -> None:
    _write_partial(storage, data[:300_000])

    sent = _send(src, storage)

    assert (sent.size, sent.checksum, sent.resumed_from) == (len(data), _plain(data), 300_000)
    assert _final(storage).read_bytes() == data


def test_send_file_resume_in_userspace_sends_only_the_rest(
    src: Path, storage: LocalStorage, data: bytes, written_bytes: list[int]
) -> None:
    _write_partial(storage, data[:300_000])

    sent = _send(src, storage, bucket=TokenBucket(1e12))

    assert sum(written_bytes) == len(data) - 300_000
    assert (sent.checksum, _final(storage).read_bytes()) == (_plain(data), data)


def test_send_file_restarts_a_partial_whose_prefix_differs(src: Path, storage: LocalStorage, data: bytes) -> None:
    _write_partial(storage, data[:299_999] + bytes([data[299_999] ^ 0xFF]))
    progress = Progress()

    sent = _send(src, storage, on_bytes=progress)

    assert (progress.resumed, progress.sent, sent.resumed_from) == (0, len(data), 0)
    assert _final(storage).read_bytes() == data


def test_send_file_restarts_a_partial_longer_than_the_source(src: Path, storage: LocalStorage, data: bytes) -> None:
    _write_partial(storage, data + b"tail")
    progress = Progress()

    _send(src, storage, on_bytes=progress)

    assert (progress.resumed, progress.sent) == (0, len(data))
    assert _final(storage).read_bytes() == data


def test_send_file_finalizes_a_complete_partial_without_sending(src: Path, storage: LocalStorage, data: bytes) -> None:
    _write_partial(storage, data)
    progress = Progress()

    _send(src, storage, on_bytes=progress)

    assert (progress.resumed, progress.sent) == (len(data), 0)
    assert _final(storage).read_bytes() == data


def _stopped_ranged_send(src: Path, storage: LocalStorage) -> set[int]:
    """Send in ranges, two at a time, and stop once 10 chunks went; the indexes of the finished ranges."""
    stop = threading.Event()
    options = SendOptions(
        chunk=16 * KIB, kernel_chunk=16 * KIB, range_size=64 * KIB, range_threshold=256 * KIB, ranges_in_parallel=2
    )
    with pytest.raises(Stopped):
        _send(
            src, storage, stop=stop, on_bytes=Progress(then=lambda p: stop.set() if len(p.calls) >= 10 else None), options=options
        )
    marker = storage.read_marker(SERVER)
    assert marker is not None
    return {int(index) for index in json.loads(marker)["done"]}


def test_send_file_in_ranges_resume_skips_the_finished_ranges(src: Path, storage: LocalStorage, data: bytes) -> None:
    done = _stopped_ranged_send(src, storage)
    progress = Progress()

    _send(src, storage, on_bytes=progress, options=RANGED)

    resumed = sum(len(data[i * 64 * KIB : (i + 1) * 64 * KIB]) for i in done)
    assert done
    assert (progress.resumed, progress.sent) == (resumed, len(data) - resumed)


def test_send_file_in_ranges_resume_delivers_identical_bytes_and_checksum(src: Path, storage: LocalStorage, data: bytes) -> None:
    _stopped_ranged_send(src, storage)

    sent = _send(src, storage, options=RANGED)

    assert sent.resumed_from > 0
    assert (sent.checksum, _final(storage).read_bytes()) == (_ranged(data, 64 * KIB), data)


def test_send_file_in_ranges_resume_resends_a_finished_range_whose_bytes_changed(
    src: Path, storage: LocalStorage, data: bytes
) -> None:
    done = _stopped_ranged_send(src, storage)
    damaged = min(done)
    with open(_partial(storage), "r+b") as handle:
        handle.seek(damaged * 64 * KIB + 7)
        handle.write(bytes([data[damaged * 64 * KIB + 7] ^ 0xFF]))
    progress = Progress()

    _send(src, storage, on_bytes=progress, options=RANGED)

    assert progress.resumed == sum(len(data[i * 64 * KIB : (i + 1) * 64 * KIB]) for i in done if i != damaged)
    assert _final(storage).read_bytes() == data


def test_send_file_stream_restarts_a_partial_left_by_a_ranged_send(src: Path, storage: LocalStorage, data: bytes) -> None:
    _stopped_ranged_send(src, storage)
    progress = Progress()

    _send(src, storage, on_bytes=progress, options=STREAM)

    assert (progress.resumed, progress.sent) == (0, len(data))
    assert _final(storage).read_bytes() == data


# source changed during the copy


def _append_once(path: Path) -> Callable[[Progress], None]:
    def then(progress: Progress) -> None:
        if len(progress.calls) == 1:
            with open(path, "ab") as handle:
                handle.write(b"more")

    return then


def test_send_file_refuses_a_source_that_grew_during_the_copy(src: Path, storage: LocalStorage) -> None:
    failed = _failure(lambda: _send(src, storage, on_bytes=Progress(then=_append_once(src))))

    assert (failed.code, failed.retryable) == ("source_changed", True)
    assert str(failed) == f"local file changed while it was being sent: {src}"


def test_send_file_keeps_nothing_of_a_source_that_changed(src: Path, storage: LocalStorage) -> None:
    _failure(lambda: _send(src, storage, on_bytes=Progress(then=_append_once(src))))

    assert not _final(storage).exists()
    assert storage.partial_size(SERVER) == 0


def test_send_file_refuses_a_source_rewritten_in_place_during_the_copy(src: Path, storage: LocalStorage) -> None:
    def rewrite(progress: Progress) -> None:
        if len(progress.calls) == 1:
            with open(src, "r+b") as handle:
                handle.write(b"X" * 1000)
            mtime = src.stat().st_mtime_ns + 5_000_000_000
            os.utime(src, ns=(mtime, mtime))

    failed = _failure(lambda: _send(src, storage, on_bytes=Progress(then=rewrite)))

    assert failed.code == "source_changed"
    assert not _final(storage).exists()


def test_send_file_refuses_a_source_that_shrank_during_the_copy(src: Path, storage: LocalStorage) -> None:
    def shrink(progress: Progress) -> None:
        if len(progress.calls) == 1:
            os.truncate(src, 100_000)

    failed = _failure(lambda: _send(src, storage, on_bytes=Progress(then=shrink)))

    assert failed.code == "source_changed"
    assert not _final(storage).exists()


def test_send_file_in_ranges_refuses_a_source_that_changed(src: Path, storage: LocalStorage) -> None:
    failed = _failure(lambda: _send(src, storage, on_bytes=Progress(then=_append_once(src)), options=RANGED))

    assert (failed.code, failed.retryable) == ("source_changed", True)
    assert not _final(storage).exists()


# sources that cannot be read


def test_send_file_fails_a_missing_source_for_good(tmp_path: Path, storage: LocalStorage) -> None:
    missing = tmp_path / "missing.bin"

    failed = _failure(lambda: _send(missing, storage))

    assert (failed.code, failed.retryable, str(failed)) == ("missing_source", False, f"local file not found: {missing}")


def test_send_file_fails_a_folder_for_good(tmp_path: Path, storage: LocalStorage) -> None:
    failed = _failure(lambda: _send(tmp_path, storage))

    assert (failed.code, failed.retryable, str(failed)) == (
        "not_a_file",
        False,
        f"local path is a folder, not a file: {tmp_path}",
    )


def test_send_file_refuses_a_fifo_without_hanging(tmp_path: Path, storage: LocalStorage) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            _send(fifo, storage)
        except BaseException as exc:
            outcome.append(exc)

    sender = threading.Thread(target=attempt, daemon=True)
    sender.start()
    sender.join(timeout=10)

    assert not sender.is_alive(), "send_file hung on a FIFO"
    assert isinstance(outcome[0], SendFailed)
    assert (outcome[0].code, str(outcome[0])) == ("not_a_file", f"local path is not a regular file: {fifo}")


def test_send_file_fails_an_unreadable_source_for_good(src: Path, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def guarded(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) == str(src):
            raise PermissionError(errno.EACCES, "Permission denied", str(src))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)

    failed = _failure(lambda: _send(src, storage))

    assert (failed.code, failed.retryable, str(failed)) == ("permission", False, f"permission denied reading {src}")
    assert not _final(storage).exists()


# destinations that cannot be written


def _raising(code: int) -> Callable[..., int]:
    def fail(*args: Any) -> int:
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_send_file_stops_the_run_when_the_destination_is_full(
    src: Path, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    monkeypatch.setattr(os, "pwrite", _raising(code))

    failed = _failure(lambda: _send(src, storage, bucket=TokenBucket(1e12)))

    assert (failed.code, failed.retryable, failed.stops_run) == ("disk_full", False, True)
    assert str(failed) == f"no space left on the farm storage writing {SERVER}"


def test_send_file_stops_the_run_when_the_kernel_copy_finds_the_destination_full(
    src: Path, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "copy_file_range", _raising(errno.ENOSPC))

    failed = _failure(lambda: _send(src, storage))

    assert (failed.code, failed.stops_run) == ("disk_full", True)
    assert not _final(storage).exists()


class FullAtOpen(Wrapped):
    def open_partial(self, path: str, offset: int, *, size: int | None = None) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_send_file_stops_the_run_when_the_partial_cannot_be_created_on_a_full_disk(src: Path, storage: LocalStorage) -> None:
    failed = _failure(lambda: _send(src, FullAtOpen(storage)))

    assert (failed.code, failed.stops_run) == ("disk_full", True)


def test_send_file_retries_a_write_that_failed_with_an_io_error(
    src: Path, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "pwrite", _raising(errno.EIO))

    failed = _failure(lambda: _send(src, storage, bucket=TokenBucket(1e12)))

    assert (failed.code, failed.retryable, failed.stops_run) == ("write_error", True, False)


class ReadOnly(Wrapped):
    def open_partial(self, path: str, offset: int, *, size: int | None = None) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")


def test_send_file_fails_a_destination_without_write_permission_for_good(src: Path, storage: LocalStorage) -> None:
    failed = _failure(lambda: _send(src, ReadOnly(storage)))

    assert (failed.code, failed.retryable, str(failed)) == (
        "permission",
        False,
        f"permission denied writing {SERVER} on the farm storage",
    )


# stop


def test_send_file_stop_raises_stopped(src: Path, storage: LocalStorage) -> None:
    stop = threading.Event()

    with pytest.raises(Stopped):
        _send(src, storage, stop=stop, on_bytes=Progress(then=lambda p: stop.set()))


def test_send_file_stop_keeps_the_partial_for_a_resume(src: Path, storage: LocalStorage, data: bytes) -> None:
    stop = threading.Event()

    with pytest.raises(Stopped):
        _send(src, storage, stop=stop, on_bytes=Progress(then=lambda p: stop.set()))

    assert _partial(storage).read_bytes() == data[: 64 * KIB]


def test_send_file_stop_leaves_the_file_at_the_final_name_untouched(src: Path, storage: LocalStorage) -> None:
    _final(storage).parent.mkdir(parents=True)
    _final(storage).write_bytes(b"the previous version")
    stop = threading.Event()

    with pytest.raises(Stopped):
        _send(src, storage, stop=stop, on_bytes=Progress(then=lambda p: stop.set()))

    assert _final(storage).read_bytes() == b"the previous version"


def test_send_file_stop_under_a_speed_limit_ends_the_wait(src: Path, storage: LocalStorage) -> None:
    stop = threading.Event()
    stop.set()

    with pytest.raises(Stopped):
        _send(src, storage, bucket=TokenBucket(1.0), stop=stop)


def test_send_file_in_ranges_stop_raises_stopped_and_keeps_the_partial(src: Path, storage: LocalStorage) -> None:
    stop = threading.Event()

    with pytest.raises(Stopped):
        _send(src, storage, stop=stop, on_bytes=Progress(then=lambda p: stop.set()), options=RANGED)

    assert _partial(storage).exists()
    assert not _final(storage).exists()


# verification at the destination


class CorruptBeforeFinalize(Wrapped):
    """Flips one byte of the partial file between the last write and the rename (a bad disk, a bad link)."""

    def finalize(self, path: str, *, size: int, checksum: str, handle: BinaryIO, verified: Any = None) -> None:
        partial = _partial(self.inner)
        with open(partial, "r+b") as raw:
            first = raw.read(1)
            raw.seek(0)
            raw.write(bytes([first[0] ^ 0x01]))
        self.inner.finalize(path, size=size, checksum=checksum, handle=handle, verified=verified)


class TruncateBeforeFinalize(Wrapped):
    def finalize(self, path: str, *, size: int, checksum: str, handle: BinaryIO, verified: Any = None) -> None:
        os.truncate(_partial(self.inner), size - 1)
        self.inner.finalize(path, size=size, checksum=checksum, handle=handle, verified=verified)


@pytest.mark.parametrize("wrapper", [CorruptBeforeFinalize, TruncateBeforeFinalize])
def test_send_file_fails_verification_when_the_destination_differs(
    src: Path, storage: LocalStorage, wrapper: type[Wrapped]
) -> None:
    failed = _failure(lambda: _send(src, wrapper(storage)))

    assert (failed.code, failed.retryable) == ("verify_failed", True)


@pytest.mark.parametrize("wrapper", [CorruptBeforeFinalize, TruncateBeforeFinalize])
def test_send_file_leaves_nothing_at_the_final_name_when_verification_fails(
    src: Path, storage: LocalStorage, wrapper: type[Wrapped]
) -> None:
    _failure(lambda: _send(src, wrapper(storage)))

    assert not _final(storage).exists()
    assert not _partial(storage).exists()


def test_send_file_in_ranges_fails_verification_when_the_destination_differs(src: Path, storage: LocalStorage) -> None:
    failed = _failure(lambda: _send(src, CorruptBeforeFinalize(storage), options=RANGED))

    assert failed.code == "verify_failed"
    assert not _final(storage).exists()


def test_send_file_reads_back_and_refuses_bytes_the_disk_changed_while_writing(
    src: Path, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pwrite = os.pwrite

    def flipping_pwrite(fd: int, data: Any, offset: int) -> int:
        damaged = bytearray(data)
        damaged[0] ^= 0x01  # a bad disk or link: what lands is not what was sent
        return real_pwrite(fd, damaged, offset)

    monkeypatch.setattr(send_module.os, "pwrite", flipping_pwrite)

    failed = _failure(lambda: _send(src, storage, options=SendOptions(kernel_copy=False)))

    assert (failed.code, failed.retryable) == ("verify_failed", True)
    assert not _final(storage).exists()
    assert not _partial(storage).exists()
