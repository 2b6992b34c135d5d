"""Fault tests (issue 3 item 8): a process killed mid-file and resumed, a destination that fills up,
permission denied, a missing source, a source changed during the copy.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash

from tests.conftest import wait_for
from tests.engine.disks import limited_disk
from transfers.engine import hashing
from transfers.engine.events import BytesSent, Event, FileFinished, FileNotSent, FileRetrying, FileStarted
from transfers.engine.ratelimit import TokenBucket
from transfers.engine.runner import Control, FileTask, RunSummary, TransferOptions, run_upload
from transfers.engine.send import SendFailed, SendOptions, send_file
from transfers.engine.storage import PARTIAL_SUFFIX, LocalStorage

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20
SERVER = "D/big.bin"
QUICK_RETRIES = {"backoff_base": 0.001, "backoff_cap": 0.01}

# The child sends under a speed limit so it is still at work when it is killed.
_CHILD = """
import sys, threading
from pathlib import Path
from transfers.engine.ratelimit import TokenBucket
from transfers.engine.send import SendOptions, send_file
from transfers.engine.storage import LocalStorage
src, root, server, rate, threshold = sys.argv[1:]
options = SendOptions(range_size=4 << 20, range_threshold=int(threshold), ranges_in_parallel=4)
send_file(Path(src), LocalStorage(root), server, bucket=TokenBucket(float(rate)), stop=threading.Event(),
          on_bytes=lambda count, resumed: None, options=options)
print("finished")
"""


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    data = os.urandom(64 * MIB)
    path = tmp_path_factory.mktemp("source") / "big.bin"
    path.write_bytes(data)
    return path, data


class Progress:
    """on_bytes for the resume; checks at every call that nothing sits at the final name yet."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.calls: list[tuple[int, bool]] = []
        self.final_seen = False
        self.lock = threading.Lock()

    def __call__(self, count: int, resumed: bool) -> None:
        with self.lock:
            self.calls.append((count, resumed))
            self.final_seen |= self.final.exists()

    @property
    def resumed(self) -> int:
        return sum(count for count, resumed in self.calls if resumed)

    @property
    def sent(self) -> int:
        return sum(count for count, resumed in self.calls if not resumed)


def _kill_midway(src: Path, storage: LocalStorage, *, rate: int, threshold: int, until: Any) -> list[bool]:
    """Run send_file in a child process, SIGKILL it once `until()` holds; whether the final name was ever seen."""
    final = storage.root / SERVER
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(src), str(storage.root), SERVER, str(rate), str(threshold)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen: list[bool] = []
    try:

        def grown() -> bool:
            seen.append(final.exists())
            if child.poll() is not None:
                pytest.fail(f"the child ended before it was killed: {child.communicate()}")
            return bool(until())

        wait_for(grown, timeout=30, interval=0.01, what="the child's partial file to grow")
    finally:
        child.kill()
        child.communicate()
    seen.append(final.exists())
    return seen


def test_killed_mid_file_resumes_from_the_verified_prefix(tmp_path: Path, big: tuple[Path, bytes]) -> None:
    src, data = big
    storage = LocalStorage(tmp_path / "storage")
    seen = _kill_midway(src, storage, rate=8 * MIB, threshold=1 << 40, until=lambda: storage.partial_size(SERVER) >= 4 * MIB)
    left = storage.partial_size(SERVER)
    progress = Progress(storage.root / SERVER)

    sent = send_file(src, storage, SERVER, bucket=TokenBucket(None), stop=threading.Event(), on_bytes=progress)

    assert 4 * MIB <= left < len(data)
    assert progress.calls[0] == (left, True)
    assert (progress.resumed, progress.sent, sent.resumed_from) == (left, len(data) - left, left)
    assert sent.checksum == f"xxh3-128:{xxhash.xxh3_128(data).hexdigest()}"
    assert (storage.root / SERVER).read_bytes() == data
    assert not any(seen) and not progress.final_seen


def test_killed_mid_file_in_ranges_resumes_only_the_unfinished_ranges(tmp_path: Path, big: tuple[Path, bytes]) -> None:
    src, data = big
    storage = LocalStorage(tmp_path / "storage")

    def ranges_done() -> bool:
        marker = storage.read_marker(SERVER)
        return marker is not None and len(json.loads(marker)["done"]) >= 2

    seen = _kill_midway(src, storage, rate=32 * MIB, threshold=8 * MIB, until=ranges_done)
    marker = storage.read_marker(SERVER)
    assert marker is not None
    done = len(json.loads(marker)["done"])
    progress = Progress(storage.root / SERVER)
    options = SendOptions(range_size=4 * MIB, range_threshold=8 * MIB, ranges_in_parallel=4)

    sent = send_file(src, storage, SERVER, bucket=TokenBucket(None), stop=threading.Event(), on_bytes=progress, options=options)

    assert 2 <= done < 16
    assert (progress.resumed, progress.sent) == (done * 4 * MIB, len(data) - done * 4 * MIB)
    ranged = hashing.ranged(4 * MIB, (xxhash.xxh3_128(data[s : s + 4 * MIB]).digest() for s in range(0, len(data), 4 * MIB)))
    assert sent.checksum == ranged
    assert (storage.root / SERVER).read_bytes() == data
    assert not any(seen) and not progress.final_seen


def test_killed_mid_file_leaves_the_partial_under_a_hidden_name(tmp_path: Path, big: tuple[Path, bytes]) -> None:
    src, _ = big
    storage = LocalStorage(tmp_path / "storage")

    _kill_midway(src, storage, rate=8 * MIB, threshold=1 << 40, until=lambda: storage.partial_size(SERVER) > 0)

    assert [p.name for p in (storage.root / "D").iterdir()] == [f".big.bin{PARTIAL_SUFFIX}"]


# a destination that fills up


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 1 MiB filesystem: a real tmpfs when this process may mount one, else an emulated one."""
    with limited_disk(tmp_path / "small", MIB, monkeypatch):
        yield tmp_path / "small"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "local" / "two.bin"
    path.parent.mkdir()
    path.write_bytes(os.urandom(2 * MIB))
    return path


def test_full_destination_fails_the_file_as_disk_full(small_disk: Path, source: Path) -> None:
    storage = LocalStorage(small_disk)

    with pytest.raises(SendFailed) as failed:
        send_file(source, storage, SERVER, bucket=TokenBucket(None), stop=threading.Event(), on_bytes=lambda c, r: None)

    assert (failed.value.code, failed.value.retryable, failed.value.stops_run) == ("disk_full", False, True)
    assert not (small_disk / SERVER).exists()


def test_full_destination_under_a_speed_limit_fails_the_file_as_disk_full(small_disk: Path, source: Path) -> None:
    with pytest.raises(SendFailed) as failed:
        send_file(
            source, LocalStorage(small_disk), SERVER, bucket=TokenBucket(1e12), stop=threading.Event(), on_bytes=lambda c, r: None
        )

    assert failed.value.code == "disk_full"


def test_full_destination_sends_what_fits_and_stops_with_the_reason(small_disk: Path, source: Path) -> None:
    others = [source.with_name(f"o{n}.bin") for n in range(3)]
    for other in others:
        other.write_bytes(b"o" * 1000)
    tasks = [FileTask(1, str(source), "/D/two.bin")] + [FileTask(n + 2, str(o), f"/D/{o.name}") for n, o in enumerate(others)]
    events: list[Event] = []

    summary = run_upload(
        tasks,
        storage=LocalStorage(small_disk),
        allowed_roots=[source.parent],
        report=events.append,
        options=TransferOptions(pool_size=1, attempts=3, **QUICK_RETRIES),
    )

    assert (summary.stopped, summary.files_ok, summary.files_failed, summary.files_not_sent) == (True, 3, 0, 1)
    assert summary.stop_reason.startswith("destination full: needs 2.1 MB, has ")
    assert summary.stop_reason.endswith(f" MB on {small_disk}")
    assert sorted(e.item_id for e in events if isinstance(e, FileFinished)) == [2, 3, 4]
    assert [e.item_id for e in events if isinstance(e, FileNotSent)] == [1]
    assert not (small_disk / "D" / "two.bin").exists()


# permission denied


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, LocalStorage]:
    local = tmp_path / "local"
    local.mkdir()
    return local, LocalStorage(tmp_path / "storage")


def _upload(local: Path, storage: Any, tasks: list[FileTask], events: list[Event], **options: Any) -> RunSummary:
    return run_upload(
        tasks,
        storage=storage,
        allowed_roots=[local],
        report=lambda event: events.append(event),
        options=TransferOptions(**{"attempts": 3, **QUICK_RETRIES, **options}),
        control=Control(),
    )


def _finished(events: list[Event]) -> dict[int, FileFinished]:
    return {e.item_id: e for e in events if isinstance(e, FileFinished)}


def test_unreadable_source_fails_at_once_and_the_others_arrive(
    site: tuple[Path, LocalStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    local, storage = site
    secret, public = local / "secret.bin", local / "public.bin"
    secret.write_bytes(b"s")
    public.write_bytes(b"p")
    real_open = os.open

    def guarded(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) in (str(secret), secret.name):  # by path, or by name in its folder
            raise PermissionError(errno.EACCES, "Permission denied", str(secret))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)
    events: list[Event] = []

    summary = _upload(
        local, storage, [FileTask(1, str(secret), "/D/secret.bin"), FileTask(2, str(public), "/D/public.bin")], events
    )

    finished = _finished(events)
    assert (finished[1].error_code, finished[1].attempts, finished[1].error) == (
        "permission",
        1,
        f"permission denied reading {secret}",
    )
    assert (summary.files_ok, (storage.root / "D" / "public.bin").read_bytes()) == (1, b"p")


class ReadOnlyStorage:
    def __init__(self, inner: LocalStorage) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open_partial(self, path: str, offset: int, *, size: int | None = None) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")


def test_destination_without_write_permission_fails_at_once(site: tuple[Path, LocalStorage]) -> None:
    local, storage = site
    (local / "a.bin").write_bytes(b"a")
    events: list[Event] = []

    _upload(local, ReadOnlyStorage(storage), [FileTask(1, str(local / "a.bin"), "/D/a.bin")], events)

    finished = _finished(events)[1]
    assert (finished.error_code, finished.attempts, finished.error) == (
        "permission",
        1,
        "permission denied writing D/a.bin on the farm storage",
    )
    assert not [e for e in events if isinstance(e, FileRetrying)]


# a missing source


def test_missing_source_fails_at_once_with_its_path(site: tuple[Path, LocalStorage]) -> None:
    local, storage = site
    events: list[Event] = []

    _upload(local, storage, [FileTask(1, str(local / "gone.bin"), "/D/gone.bin")], events)

    finished = _finished(events)[1]
    assert (finished.error_code, finished.attempts, finished.error) == (
        "missing_source",
        1,
        f"local file not found: {local / 'gone.bin'}",
    )


def test_source_deleted_after_it_was_listed_fails_at_once(site: tuple[Path, LocalStorage]) -> None:
    local, storage = site
    doomed = local / "doomed.bin"
    doomed.write_bytes(b"d" * 1000)
    events: list[Event] = []

    def report(event: Event) -> None:
        events.append(event)
        if isinstance(event, FileStarted):
            doomed.unlink()

    options = TransferOptions(attempts=3, **QUICK_RETRIES)

    run_upload(
        [FileTask(1, str(doomed), "/D/doomed.bin")], storage=storage, allowed_roots=[local], report=report, options=options
    )

    finished = _finished(events)[1]
    assert (finished.error_code, finished.attempts) == ("missing_source", 1)
    assert not (storage.root / "D" / "doomed.bin").exists()


# a source changed during the copy


def test_source_changed_during_the_copy_is_retried_and_the_new_content_arrives(site: tuple[Path, LocalStorage]) -> None:
    local, storage = site
    path = local / "live.bin"
    path.write_bytes(b"1" * 100_000)
    events: list[Event] = []

    def report(event: Event) -> None:
        events.append(event)
        if isinstance(event, BytesSent) and sum(isinstance(e, BytesSent) for e in events) == 1:
            path.write_bytes(b"2" * 150_000)

    options = TransferOptions(attempts=3, send=SendOptions(chunk=16_384, kernel_chunk=16_384), **QUICK_RETRIES)

    run_upload([FileTask(1, str(path), "/D/live.bin")], storage=storage, allowed_roots=[local], report=report, options=options)

    assert [e.error_code for e in events if isinstance(e, FileRetrying)] == ["source_changed"]
    assert (_finished(events)[1].attempts, (storage.root / "D" / "live.bin").read_bytes()) == (2, b"2" * 150_000)


def test_source_that_keeps_changing_fails_after_the_attempts_and_stores_nothing(site: tuple[Path, LocalStorage]) -> None:
    local, storage = site
    path = local / "busy.bin"
    path.write_bytes(b"x" * 100_000)
    events: list[Event] = []

    def report(event: Event) -> None:
        events.append(event)
        if isinstance(event, BytesSent):
            with open(path, "ab") as handle:
                handle.write(b"+")

    options = TransferOptions(attempts=3, send=SendOptions(chunk=16_384, kernel_chunk=16_384), **QUICK_RETRIES)

    run_upload([FileTask(1, str(path), "/D/busy.bin")], storage=storage, allowed_roots=[local], report=report, options=options)

    finished = _finished(events)[1]
    assert (finished.error_code, finished.attempts) == ("source_changed", 3)
    assert finished.error == f"local file changed while it was being sent: {path} (after 3 attempts)"
    assert [p.name for p in (storage.root / "D").iterdir()] == []


def test_a_file_another_writer_holds_waits_for_it_without_spending_attempts(site: tuple[Path, LocalStorage]) -> None:
    # The other writer: a run of the same job still stopping after this one took it over.
    local, storage = site
    path = local / "held.bin"
    path.write_bytes(b"h" * 50_000)
    held = storage.open_partial("/D/held.bin", 0)
    threading.Timer(0.5, held.close).start()  # it lets go of the partial once it has stopped
    events: list[Event] = []

    _upload(local, storage, [FileTask(1, str(path), "/D/held.bin")], events, attempts=1, busy_poll=0.05)

    finished = _finished(events)[1]
    assert (finished.ok, finished.attempts) == (True, 1)
    assert (storage.root / "D" / "held.bin").read_bytes() == path.read_bytes()


def test_a_file_held_by_another_writer_beyond_the_patience_fails_busy(site: tuple[Path, LocalStorage]) -> None:
    local, storage = site
    path = local / "held.bin"
    path.write_bytes(b"h" * 50_000)
    events: list[Event] = []

    with storage.open_partial("/D/held.bin", 0):
        _upload(local, storage, [FileTask(1, str(path), "/D/held.bin")], events, busy_patience=0.2, busy_poll=0.05)

    assert _finished(events)[1].error_code == "busy"
