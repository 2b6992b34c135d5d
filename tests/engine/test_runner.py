"""run_upload: many files through a pool, each failure kept to its own file, retries with backoff for
what may pass, a full disk stopping the run, the ledger skipping what is already there, a live speed
limit; the report callback can stop it (issue 3 items 5, 6).
"""

from __future__ import annotations

import errno
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import xxhash

from transfers.engine import hashing
from transfers.engine.events import FileNotSent, FileRetrying, FileStarted
from transfers.engine.ledger import LedgerRecord, MemoryLedger
from transfers.engine.paths import PathMap
from transfers.engine.ratelimit import TokenBucket, max_speed_to_rate
from transfers.engine.runner import (
    BytesSent,
    Control,
    Event,
    FileFinished,
    FileTask,
    RunSummary,
    TransferOptions,
    backoff_delay,
    run_upload,
)
from transfers.engine.send import SendOptions
from transfers.engine.storage import PARTIAL_SUFFIX, LocalStorage

KIB = 1 << 10
QUICK_RETRIES = {"backoff_base": 0.001, "backoff_cap": 0.01}


@dataclass
class Site:
    """A local folder the engine may read and a storage root it writes into."""

    local: Path
    storage: Path

    def file(self, name: str, content: bytes) -> Path:
        path = self.local / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path

    def stored(self) -> list[str]:
        """Files at their final names (partial files of stopped sends are kept for a resume)."""
        files = (p for p in self.storage.rglob("*") if p.is_file() and PARTIAL_SUFFIX not in p.name)
        return sorted(p.relative_to(self.storage).as_posix() for p in files)


@dataclass
class Recorder:
    """A thread-safe report callback that keeps every event and may act on each."""

    stop_when: Callable[[Event], bool] | None = None
    then: Callable[[Event], None] | None = None
    events: list[Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: Event) -> bool:
        with self.lock:
            self.events.append(event)
        if self.then is not None:
            self.then(event)
        return not (self.stop_when is not None and self.stop_when(event))

    def finished(self) -> dict[int, FileFinished]:
        return {e.item_id: e for e in self.events if isinstance(e, FileFinished)}

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


class Wrapped:
    """A Storage that delegates to a LocalStorage; subclasses override one method to misbehave."""

    def __init__(self, inner: LocalStorage) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FlakyStorage(Wrapped):
    """The first `failures` attempts to open a partial file fail with EIO (a network filesystem hiccup)."""

    def __init__(self, inner: LocalStorage, failures: int) -> None:
        super().__init__(inner)
        self.failures = failures

    def open_partial(self, path: str, offset: int, *, size: int | None = None) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise OSError(errno.EIO, "Input/output error")
        return self.inner.open_partial(path, offset, size=size)


class FullStorage(Wrapped):
    def open_partial(self, path: str, offset: int, *, size: int | None = None) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def site(tmp_path: Path) -> Site:
    local, storage = tmp_path / "local", tmp_path / "storage"
    local.mkdir()
    storage.mkdir()
    return Site(local=local, storage=storage)


def _run(
    site: Site,
    tasks: list[FileTask],
    report: Recorder | None = None,
    *,
    storage: Any = None,
    control: Control | None = None,
    ledger: MemoryLedger | None = None,
    path_map: PathMap | None = None,
    **options: Any,
) -> RunSummary:
    return run_upload(
        tasks,
        storage=storage if storage is not None else LocalStorage(site.storage),
        allowed_roots=[site.local],
        report=report if report is not None else Recorder(),
        options=TransferOptions(**options),
        control=control,
        ledger=ledger,
        path_map=path_map,
    )


def _mixed(site: Site) -> list[FileTask]:
    """Items 1 and 3 exist (5 and 7 bytes), items 2 and 4 do not."""
    return [
        FileTask(1, str(site.file("a.exr", b"aaaaa")), "/D/a.exr"),
        FileTask(2, str(site.local / "missing-b.exr"), "/D/b.exr"),
        FileTask(3, str(site.file("c.exr", b"ccccccc")), "/D/c.exr"),
        FileTask(4, str(site.local / "missing-d.exr"), "/D/d.exr"),
    ]


def _files(site: Site, count: int, size: int = 100) -> list[FileTask]:
    return [FileTask(n, str(site.file(f"f{n}.bin", bytes([n]) * size)), f"/D/f{n}.bin") for n in range(1, count + 1)]


# outcomes


def test_run_upload_reports_each_file_finished_with_its_own_outcome(site: Site) -> None:
    report = Recorder()

    _run(site, _mixed(site), report)

    finished = report.finished()
    assert {item: event.ok for item, event in finished.items()} == {1: True, 2: False, 3: True, 4: False}
    assert (finished[1].size, finished[1].checksum) == (5, f"xxh3-128:{xxhash.xxh3_128(b'aaaaa').hexdigest()}")
    assert finished[2].error_code == "missing_source"
    assert finished[2].error == f"local file not found: {site.local / 'missing-b.exr'}"


def test_run_upload_summary_counts_good_and_failed_files_and_bytes(site: Site) -> None:
    summary = _run(site, _mixed(site))

    assert summary == RunSummary(files_ok=2, files_failed=2, files_skipped=0, bytes_sent=12, stopped=False)


def test_run_upload_still_delivers_the_good_files_when_others_fail(site: Site) -> None:
    _run(site, _mixed(site))

    assert (site.storage / "D" / "a.exr").read_bytes() == b"aaaaa"
    assert (site.storage / "D" / "c.exr").read_bytes() == b"ccccccc"
    assert site.stored() == ["D/a.exr", "D/c.exr"]


def test_run_upload_bytes_events_add_up_to_the_bytes_sent(site: Site) -> None:
    report = Recorder()

    summary = _run(site, _mixed(site), report, send=SendOptions(chunk=3, kernel_chunk=3))

    sent = report.of(BytesSent)
    assert sum(e.count for e in sent) == summary.bytes_sent == 12
    assert {e.item_id for e in sent} == {1, 3}


def test_run_upload_announces_each_file_with_its_size_before_its_bytes(site: Site) -> None:
    report = Recorder()

    _run(site, _files(site, 1, size=300), report, send=SendOptions(chunk=100, kernel_chunk=100))

    assert [type(e).__name__ for e in report.events] == ["FileStarted", "BytesSent", "BytesSent", "BytesSent", "FileFinished"]
    assert report.of(FileStarted) == [FileStarted(1, 300)]


@pytest.mark.parametrize("pool_size", [1, 4])
def test_run_upload_delivers_every_file_with_pool_size(site: Site, pool_size: int) -> None:
    contents = {number: os.urandom(1 + number * 997) for number in range(1, 31)}
    tasks = [FileTask(n, str(site.file(f"s{n % 3}/f{n}.bin", c)), f"/D/s{n % 3}/f{n}.bin") for n, c in contents.items()]

    summary = _run(site, tasks, pool_size=pool_size)

    assert summary == RunSummary(
        files_ok=30, files_failed=0, files_skipped=0, bytes_sent=sum(map(len, contents.values())), stopped=False
    )
    assert all((site.storage / "D" / f"s{n % 3}" / f"f{n}.bin").read_bytes() == c for n, c in contents.items())


def test_run_upload_with_four_workers_sends_files_at_the_same_time(site: Site) -> None:
    # Each file waits in its first BytesSent until four are in flight: only a real pool gets there.
    # (Files under 1 MiB travel in groups, one group per thread: these are just over.)
    gate = threading.Barrier(4, timeout=10)
    report = Recorder(then=lambda e: gate.wait() if isinstance(e, BytesSent) and e.item_id <= 4 else None)

    summary = _run(site, _files(site, 8, size=(1 << 20) + 1), report, pool_size=4)

    assert summary.files_ok == 8


def test_run_upload_maps_local_paths_through_the_path_map(site: Site) -> None:
    site.file("shots/a.exr", b"mapped")

    _run(site, [FileTask(1, "D:\\shots\\a.exr", "/D/shots/a.exr")], path_map=PathMap({"D:/": f"{site.local}/"}))

    assert (site.storage / "D" / "shots" / "a.exr").read_bytes() == b"mapped"


# stopping


def test_run_upload_stops_when_the_report_returns_false(site: Site) -> None:
    report = Recorder(stop_when=lambda e: isinstance(e, FileStarted) and e.item_id == 2)

    summary = _run(site, _files(site, 5), report, pool_size=1)

    assert summary == RunSummary(
        files_ok=1, files_failed=0, files_skipped=0, bytes_sent=100, stopped=True, stop_reason="stopped by the caller"
    )
    assert list(report.finished()) == [1]
    assert site.stored() == ["D/f1.bin"]


def test_run_upload_stopped_midway_keeps_the_partial_and_nothing_at_the_final_name(site: Site) -> None:
    tasks = [FileTask(1, str(site.file("big.bin", b"x" * 64)), "/D/big.bin")]
    report = Recorder(stop_when=lambda e: isinstance(e, BytesSent))

    summary = _run(site, tasks, report, pool_size=1, send=SendOptions(chunk=4, kernel_chunk=4))

    assert (summary.stopped, report.finished()) == (True, {})
    assert not (site.storage / "D" / "big.bin").exists()
    assert LocalStorage(site.storage).partial_size("D/big.bin") == 4


def test_run_upload_stopped_by_control_sends_nothing(site: Site) -> None:
    control = Control()
    control.request_stop("paused by alice")

    summary = _run(site, _files(site, 3), control=control)

    assert summary == RunSummary(
        files_ok=0, files_failed=0, files_skipped=0, bytes_sent=0, stopped=True, stop_reason="paused by alice"
    )
    assert site.stored() == []


# bad paths


def test_run_upload_fails_a_local_path_outside_the_allowed_roots_as_bad_path(site: Site, tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret")
    report = Recorder()

    _run(site, [FileTask(1, str(outside), "/D/outside.bin")], report)

    assert report.finished()[1].error_code == "bad_path"
    assert not (site.storage / "D" / "outside.bin").exists()


def test_run_upload_fails_a_server_path_through_an_outside_symlink_as_bad_path(site: Site, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (site.storage / "D").symlink_to(elsewhere, target_is_directory=True)
    report = Recorder()

    _run(site, [FileTask(1, str(site.file("a.exr", b"a")), "/D/a.exr")], report)

    assert report.finished()[1].error_code == "bad_path"
    assert list(elsewhere.iterdir()) == []


def test_run_upload_fails_only_the_item_whose_local_path_is_a_symlink_loop(site: Site) -> None:
    loop = site.local / "loop.exr"
    os.symlink(loop, loop)
    tasks = [FileTask(1, str(loop), "/D/loop.exr"), FileTask(2, str(site.file("b.exr", b"b")), "/D/b.exr")]
    report = Recorder()

    summary = _run(site, tasks, report, pool_size=1)

    assert (summary.files_ok, summary.files_failed) == (1, 1)
    assert report.finished()[1].error_code == "bad_path"


def test_run_upload_fails_only_the_item_whose_server_path_climbs_out(site: Site) -> None:
    tasks = [
        FileTask(1, str(site.file("a.exr", b"a")), "/D/../../etc/a.exr"),
        FileTask(2, str(site.file("b.exr", b"b")), "/D/b.exr"),
    ]
    report = Recorder()

    summary = _run(site, tasks, report)

    assert (summary.files_ok, summary.files_failed, report.finished()[1].error_code) == (1, 1, "bad_path")


def test_run_upload_with_a_ledger_fails_only_the_item_whose_server_path_climbs_out(site: Site) -> None:
    tasks = [
        FileTask(1, str(site.file("a.exr", b"a")), "/D/../../etc/a.exr"),
        FileTask(2, str(site.file("b.exr", b"b")), "/D/b.exr"),
    ]
    report = Recorder()

    summary = _run(site, tasks, report, ledger=MemoryLedger())

    assert (summary.files_ok, summary.files_failed, report.finished()[1].error_code) == (1, 1, "bad_path")


# retries


def test_run_upload_retries_a_retryable_error_until_it_passes(site: Site) -> None:
    report = Recorder()
    storage = FlakyStorage(LocalStorage(site.storage), failures=2)

    _run(site, _files(site, 1), report, storage=storage, attempts=3, **QUICK_RETRIES)

    finished = report.finished()[1]
    assert (finished.ok, finished.attempts) == (True, 3)
    assert (site.storage / "D" / "f1.bin").read_bytes() == bytes([1]) * 100


def test_run_upload_reports_each_retry_with_its_attempt_and_reason(site: Site) -> None:
    report = Recorder()

    _run(site, _files(site, 1), report, storage=FlakyStorage(LocalStorage(site.storage), failures=2), attempts=3, **QUICK_RETRIES)

    retries = report.of(FileRetrying)
    assert [(e.item_id, e.attempt, e.error_code) for e in retries] == [(1, 1, "write_error"), (1, 2, "write_error")]
    assert all("cannot write D/f1.bin" in e.error for e in retries)


def test_run_upload_waits_a_bounded_jittered_backoff_between_attempts(site: Site) -> None:
    report = Recorder()

    _run(site, _files(site, 1), report, storage=FlakyStorage(LocalStorage(site.storage), failures=3), attempts=4, **QUICK_RETRIES)

    delays = [e.delay for e in report.of(FileRetrying)]
    assert len(delays) == 3
    assert all(0 <= delay <= min(0.01, 0.001 * 2 ** (n - 1)) for n, delay in enumerate(delays, start=1))


def test_run_upload_fails_after_the_last_attempt_naming_the_attempts(site: Site) -> None:
    report = Recorder()

    summary = _run(
        site, _files(site, 1), report, storage=FlakyStorage(LocalStorage(site.storage), failures=99), attempts=3, **QUICK_RETRIES
    )

    finished = report.finished()[1]
    assert (finished.ok, finished.error_code, finished.attempts) == (False, "write_error", 3)
    assert finished.error == "cannot write D/f1.bin: Input/output error (after 3 attempts)"
    assert (summary.files_failed, len(report.of(FileRetrying))) == (1, 2)


def test_run_upload_with_one_attempt_does_not_retry(site: Site) -> None:
    report = Recorder()

    _run(site, _files(site, 1), report, storage=FlakyStorage(LocalStorage(site.storage), failures=1), attempts=1)

    assert (report.finished()[1].ok, report.of(FileRetrying)) == (False, [])


def test_run_upload_fails_a_missing_source_at_once(site: Site) -> None:
    report = Recorder()

    _run(site, [FileTask(1, str(site.local / "gone.bin"), "/D/gone.bin")], report, attempts=5)

    assert (report.finished()[1].attempts, report.of(FileRetrying)) == (1, [])


def test_run_upload_fails_an_unreadable_source_at_once(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    (task,) = _files(site, 1)
    real_open = os.open

    def guarded(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) in (task.local, os.path.basename(task.local)):  # by path, or by name in its folder
            raise PermissionError(errno.EACCES, "Permission denied", task.local)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)
    report = Recorder()

    _run(site, [task], report, attempts=5)

    finished = report.finished()[1]
    assert (finished.error_code, finished.attempts, finished.error) == (
        "permission",
        1,
        f"permission denied reading {task.local}",
    )
    assert report.of(FileRetrying) == []


def test_run_upload_retries_a_file_whose_source_changed_and_sends_the_new_content(site: Site) -> None:
    (task,) = _files(site, 1, size=64 * KIB)

    def change_once(event: Event) -> None:
        if isinstance(event, BytesSent) and not report.of(FileRetrying) and len(report.of(BytesSent)) == 1:
            with open(task.local, "ab") as handle:
                handle.write(b"appended")

    report = Recorder(then=change_once)

    _run(site, [task], report, attempts=3, send=SendOptions(chunk=16 * KIB, kernel_chunk=16 * KIB), **QUICK_RETRIES)

    assert [e.error_code for e in report.of(FileRetrying)] == ["source_changed"]
    assert (site.storage / "D" / "f1.bin").read_bytes() == bytes([1]) * 64 * KIB + b"appended"


def test_run_upload_a_bug_costs_one_file_not_the_run(site: Site) -> None:
    class Broken(Wrapped):
        def finalize(self, path: str, *, size: int, checksum: str, handle: Any, verified: Any = None) -> None:
            if path == "D/f1.bin":
                raise RuntimeError("boom")
            self.inner.finalize(path, size=size, checksum=checksum, handle=handle, verified=verified)

    report = Recorder()

    summary = _run(site, _files(site, 3), report, storage=Broken(LocalStorage(site.storage)))

    assert (summary.files_ok, summary.files_failed) == (2, 1)
    assert (report.finished()[1].error_code, report.finished()[1].error) == ("internal", "unexpected error: RuntimeError: boom")


# names the storage keeps for itself


def test_run_upload_refuses_tasks_named_like_another_files_partial_and_keeps_that_file_whole(site: Site) -> None:
    tasks = [
        FileTask(1, str(site.file("a.bin", b"the real file")), "/D/a.bin"),
        FileTask(2, str(site.file("p.bin", b"posing as its partial")), "/D/.a.bin.rvpart"),
        FileTask(3, str(site.file("r.bin", b"posing as its marker")), "/D/.a.bin.rvpart.ranges"),
    ]
    report = Recorder()

    summary = _run(site, tasks, report, pool_size=3)

    finished = report.finished()
    assert (summary.files_ok, summary.files_failed) == (1, 2)
    assert [(finished[n].ok, finished[n].error_code) for n in (1, 2, 3)] == [(True, ""), (False, "bad_path"), (False, "bad_path")]
    assert "reserved name" in finished[2].error
    assert (site.stored(), (site.storage / "D" / "a.bin").read_bytes()) == (["D/a.bin"], b"the real file")
    assert finished[1].checksum == hashing.plain(xxhash.xxh3_128(b"the real file").hexdigest())


# a full disk


def test_run_upload_stops_the_run_when_the_disk_is_found_full_mid_file(site: Site) -> None:
    report = Recorder()
    storage = FullStorage(LocalStorage(site.storage, label='input storage of farm account "a b"'))

    summary = _run(site, _files(site, 4), report, storage=storage, pool_size=1, **QUICK_RETRIES)

    assert summary.stopped
    assert summary.stop_reason.startswith("destination full: needs 100 bytes, has ")
    assert summary.stop_reason.endswith(' on input storage of farm account "a b"')
    assert (summary.files_not_sent, summary.bytes_not_sent) == (1, 100)
    assert [(e.item_id, e.needed) for e in report.of(FileNotSent)] == [(1, 100)]


def test_run_upload_counts_the_file_that_found_the_disk_full_as_not_sent_without_retrying(site: Site) -> None:
    report = Recorder()

    _run(site, _files(site, 2), report, storage=FullStorage(LocalStorage(site.storage)), pool_size=1, attempts=5)

    assert (report.finished(), report.of(FileRetrying), len(report.of(FileNotSent))) == ({}, [], 1)


# backoff_delay


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (60, 30.0)])
def test_backoff_delay_doubles_from_the_base_up_to_the_cap(attempt: int, ceiling: float) -> None:
    assert backoff_delay(attempt, base=0.5, cap=30.0, rng=lambda: 1.0) == ceiling


def test_backoff_delay_can_be_zero() -> None:
    assert backoff_delay(5, base=0.5, cap=30.0, rng=lambda: 0.0) == 0.0


def test_backoff_delay_is_jittered_over_the_whole_interval() -> None:
    rng = random.Random(7).random
    delays = [backoff_delay(3, base=0.5, cap=30.0, rng=rng) for _ in range(200)]

    assert all(0.0 <= delay <= 2.0 for delay in delays)
    assert min(delays) < 0.2 and max(delays) > 1.8
    assert len(set(delays)) == 200


def test_backoff_delay_never_exceeds_the_cap() -> None:
    assert max(backoff_delay(n, base=0.5, cap=30.0) for n in range(1, 200)) <= 30.0


def test_transfer_options_refuse_fewer_than_one_attempt_or_worker() -> None:
    with pytest.raises(ValueError, match="pool_size and attempts must be at least 1"):
        TransferOptions(attempts=0)


# the ledger


def test_run_upload_records_each_sent_file_in_the_ledger(site: Site) -> None:
    ledger = MemoryLedger()
    (task,) = _files(site, 1)

    _run(site, [task], ledger=ledger)

    info = os.stat(task.local)
    checksum = f"xxh3-128:{xxhash.xxh3_128(bytes([1]) * 100).hexdigest()}"
    assert ledger.records == {"D/f1.bin": LedgerRecord("D/f1.bin", task.local, 100, info.st_mtime_ns, checksum)}


def test_run_upload_does_not_record_a_failed_file(site: Site) -> None:
    ledger = MemoryLedger()

    _run(site, [FileTask(1, str(site.local / "gone.bin"), "/D/gone.bin")], ledger=ledger)

    assert ledger.records == {}


def test_run_upload_skips_an_unchanged_file_without_sending_a_byte(site: Site) -> None:
    ledger, tasks = MemoryLedger(), _files(site, 2)
    _run(site, tasks, ledger=ledger)
    report = Recorder()

    summary = _run(site, tasks, report, ledger=ledger)

    assert (summary.files_skipped, summary.bytes_sent, report.of(BytesSent)) == (2, 0, [])
    assert all(event.skipped and event.ok for event in report.finished().values())


def test_a_report_that_takes_many_gets_the_unchanged_files_a_batch_at_a_time(site: Site) -> None:
    ledger, tasks = MemoryLedger(), _files(site, 5)
    _run(site, tasks, ledger=ledger)

    class Many(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[list[FileFinished]] = []

        def report_many(self, events: list[FileFinished]) -> None:
            self.calls.append(list(events))

    report = Many()
    summary = _run(site, tasks, report, ledger=ledger, batch=2)

    assert (summary.files_ok, summary.files_skipped, summary.bytes_sent) == (5, 5, 0)
    assert [sorted(e.item_id for e in call) for call in report.calls] == [[1, 2], [3, 4], [5]]
    assert all(e.ok and e.skipped and e.checksum for call in report.calls for e in call)
    assert report.finished() == {}  # none came one by one


def test_run_upload_skips_an_unchanged_file_without_hashing_it(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, tasks = MemoryLedger(), _files(site, 2)
    _run(site, tasks, ledger=ledger)
    hashed: list[str] = []
    real = hashing.fd_checksum
    monkeypatch.setattr(
        hashing, "fd_checksum", lambda fd, **kw: hashed.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd, **kw)
    )

    _run(site, tasks, ledger=ledger)

    assert hashed == []


def test_run_upload_skips_a_file_with_a_new_mtime_and_the_same_content_after_hashing_it(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, (task,) = MemoryLedger(), _files(site, 1)
    _run(site, [task], ledger=ledger)
    os.utime(task.local, ns=(10**18, 10**18))
    hashed: list[str] = []
    real = hashing.fd_checksum
    monkeypatch.setattr(
        hashing, "fd_checksum", lambda fd, **kw: hashed.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd, **kw)
    )
    report = Recorder()

    summary = _run(site, [task], report, ledger=ledger)

    assert (summary.files_skipped, report.of(BytesSent), hashed) == (1, [], [task.local])


def test_run_upload_remembers_the_new_mtime_of_a_file_whose_content_did_not_change(site: Site) -> None:
    ledger, (task,) = MemoryLedger(), _files(site, 1)
    _run(site, [task], ledger=ledger)
    os.utime(task.local, ns=(10**18, 10**18))

    _run(site, [task], ledger=ledger)

    assert ledger.records["D/f1.bin"].mtime_ns == 10**18


def test_run_upload_sends_a_file_whose_content_changed_at_the_same_size(site: Site) -> None:
    ledger, (task,) = MemoryLedger(), _files(site, 1)
    _run(site, [task], ledger=ledger)
    Path(task.local).write_bytes(b"z" * 100)
    os.utime(task.local, ns=(10**18, 10**18))

    summary = _run(site, [task], ledger=ledger)

    assert (summary.files_skipped, summary.bytes_sent) == (0, 100)
    assert (site.storage / "D" / "f1.bin").read_bytes() == b"z" * 100
    assert ledger.records["D/f1.bin"].checksum == f"xxh3-128:{xxhash.xxh3_128(b'z' * 100).hexdigest()}"


def test_run_upload_sends_a_file_whose_size_changed(site: Site) -> None:
    ledger, (task,) = MemoryLedger(), _files(site, 1)
    _run(site, [task], ledger=ledger)
    Path(task.local).write_bytes(b"z" * 101)

    summary = _run(site, [task], ledger=ledger)

    assert (summary.bytes_sent, (site.storage / "D" / "f1.bin").read_bytes()) == (101, b"z" * 101)


def test_run_upload_sends_again_a_file_whose_destination_was_deleted(site: Site) -> None:
    ledger, (task,) = MemoryLedger(), _files(site, 1)
    _run(site, [task], ledger=ledger)
    (site.storage / "D" / "f1.bin").unlink()

    summary = _run(site, [task], ledger=ledger)

    assert (summary.files_skipped, summary.bytes_sent) == (0, 100)
    assert (site.storage / "D" / "f1.bin").exists()


def test_run_upload_looks_up_the_ledger_once_per_batch(site: Site) -> None:
    ledger = MemoryLedger()

    _run(site, _files(site, 5), ledger=ledger, batch=2)

    assert ledger.lookups == 3


def test_run_upload_ledger_spans_manifests(site: Site) -> None:
    ledger = MemoryLedger()
    first = _files(site, 2)
    _run(site, first, ledger=ledger)
    second = [FileTask(10 + t.item_id, t.local, t.server) for t in first] + [
        FileTask(20, str(site.file("new.bin", b"n")), "/D/new.bin")
    ]
    report = Recorder()

    summary = _run(site, second, report, ledger=ledger)

    assert {item: e.skipped for item, e in report.finished().items()} == {11: True, 12: True, 20: False}
    assert (summary.files_skipped, summary.bytes_sent) == (2, 1)


def test_run_upload_skips_the_same_content_from_another_local_path_and_records_it(site: Site) -> None:
    ledger = MemoryLedger()
    _run(site, [FileTask(1, str(site.file("a/x.bin", b"same")), "/D/x.bin")], ledger=ledger)
    moved = site.file("b/x.bin", b"same")
    report = Recorder()

    _run(site, [FileTask(1, str(moved), "/D/x.bin")], report, ledger=ledger)

    assert (report.finished()[1].skipped, ledger.records["D/x.bin"].local) == (True, str(moved))


# the speed limit


def test_control_takes_max_speed_in_kilobytes_per_second() -> None:
    assert Control(max_speed="100").bucket.rate == 100 * 1024


def test_control_without_max_speed_sets_no_limit() -> None:
    assert Control().bucket.rate is None


class ClockedBucket(TokenBucket):
    """Moves a fake clock by each delay instead of sleeping, and records (bytes, delay) of every take."""

    def __init__(self, rate: float | None) -> None:
        self.now = 0.0
        super().__init__(rate, clock=lambda: self.now)
        self.takes: list[tuple[int, float]] = []
        self.waiting = threading.Lock()

    def take(self, count: int, stop: threading.Event | None = None) -> bool:
        with self.waiting:  # one thread "sleeps" at a time, so the fake clock never runs backwards
            delay = self.reserve(count)
            self.takes.append((count, delay))
            self.now += delay
        return not (stop and stop.is_set())


def test_control_set_max_speed_changes_the_rate_of_a_running_transfer(site: Site) -> None:
    control = Control()
    control.bucket = ClockedBucket(max_speed_to_rate(100))

    def faster(event: Event) -> None:
        if isinstance(event, BytesSent) and len(control.bucket.takes) == 1:  # type: ignore[attr-defined]
            control.set_max_speed(1000)

    _run(site, _files(site, 1, size=1 << 20), Recorder(then=faster), control=control)

    rates = [round(count / delay) for count, delay in control.bucket.takes if delay]  # type: ignore[attr-defined]
    assert rates[0] == 100 * 1024
    assert set(rates[1:]) == {1000 * 1024}


def test_run_upload_passes_every_byte_of_parallel_files_through_the_jobs_one_bucket(site: Site) -> None:
    control = Control()
    bucket = ClockedBucket(max_speed_to_rate(512))
    control.bucket = bucket

    _run(site, _files(site, 3, size=300 * KIB), control=control, pool_size=3)

    assert sum(count for count, _ in bucket.takes) == 3 * 300 * KIB


def test_run_upload_a_recorded_file_behind_a_planted_symlink_fails_alone_as_a_bad_path(site: Site, tmp_path: Path) -> None:
    ledger = MemoryLedger()
    tasks = _files(site, 2)
    _run(site, tasks, ledger=ledger)
    outside = tmp_path / "outside"
    outside.mkdir()
    for child in (site.storage / "D").iterdir():
        child.unlink()
    (site.storage / "D").rmdir()
    (site.storage / "D").symlink_to(outside)
    os.utime(tasks[0].local, ns=(1, 1))  # touched: its record must be checked, not trusted
    report = Recorder()

    summary = _run(site, tasks, report, ledger=ledger)

    assert {r.error_code for r in report.finished().values()} == {"bad_path"}
    assert (summary.files_ok, summary.files_failed) == (0, 2)
    assert not list(outside.iterdir())


def test_run_upload_rehashes_a_touched_file_in_the_pool_and_skips_it(site: Site) -> None:
    ledger = MemoryLedger()
    tasks = _files(site, 3)
    _run(site, tasks, ledger=ledger)
    os.utime(tasks[1].local, ns=(10**9, 10**9))
    report = Recorder()

    summary = _run(site, tasks, report, ledger=ledger)

    assert (summary.files_skipped, summary.bytes_sent) == (3, 0)
    assert ledger.records["D/f2.bin"].mtime_ns == 10**9


def test_run_upload_sends_small_files_in_groups_and_all_arrive(site: Site) -> None:
    tasks = _files(site, 70, size=10)  # three groups: 32, 32 and 6

    summary = _run(site, tasks, pool_size=2)

    assert (summary.files_ok, summary.bytes_sent) == (70, 700)
    assert all((site.storage / "D" / f"f{n}.bin").read_bytes() == bytes([n]) * 10 for n in range(1, 71))


# reporting: each file as it ends (the job page's files counter moves with its bytes)


def test_run_upload_reports_a_small_file_finished_before_the_next_one_of_its_group_starts(site: Site) -> None:
    report = Recorder()

    _run(site, _files(site, 10), report, pool_size=1)  # ten small files: one group, one pool thread

    order = [(type(e).__name__, e.item_id) for e in report.events if isinstance(e, FileStarted | FileFinished)]
    assert order == [(kind, n) for n in range(1, 11) for kind in ("FileStarted", "FileFinished")]


def test_run_upload_counts_files_reported_from_the_pool_threads_once(site: Site) -> None:
    report = Recorder()

    summary = _run(site, _files(site, 200), report, pool_size=4)

    assert (summary.files_ok, len(report.finished()), len(report.of(FileFinished))) == (200, 200, 200)
