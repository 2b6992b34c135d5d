"""run_upload: many files through a pool; each failure stays with its own file; the report callback can stop it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import xxhash

from transfers.engine import copy as copy_module
from transfers.engine.runner import BytesSent, Event, FileFinished, FileTask, RunSummary, run_upload


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


@dataclass
class Recorder:
    """A thread-safe report callback that keeps every event."""

    stop_when: Callable[[Event], bool] | None = None
    events: list[Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: Event) -> bool:
        with self.lock:
            self.events.append(event)
        return not (self.stop_when is not None and self.stop_when(event))

    def finished(self) -> dict[int, FileFinished]:
        return {e.item_id: e for e in self.events if isinstance(e, FileFinished)}


@pytest.fixture
def site(tmp_path: Path) -> Site:
    local, storage = tmp_path / "local", tmp_path / "storage"
    local.mkdir()
    storage.mkdir()
    return Site(local=local, storage=storage)


def _run(site: Site, tasks: list[FileTask], report: Recorder, pool_size: int = 4) -> RunSummary:
    return run_upload(tasks, storage_root=site.storage, allowed_roots=[site.local], report=report, pool_size=pool_size)


def _mixed(site: Site) -> list[FileTask]:
    """Items 1 and 3 exist (5 and 7 bytes), items 2 and 4 do not."""
    return [
        FileTask(1, str(site.file("a.exr", b"aaaaa")), "/D/a.exr"),
        FileTask(2, str(site.local / "missing-b.exr"), "/D/b.exr"),
        FileTask(3, str(site.file("c.exr", b"ccccccc")), "/D/c.exr"),
        FileTask(4, str(site.local / "missing-d.exr"), "/D/d.exr"),
    ]


def test_run_upload_reports_each_file_finished_with_its_own_outcome(site: Site) -> None:
    report = Recorder()

    _run(site, _mixed(site), report)

    finished = report.finished()
    assert {item: event.ok for item, event in finished.items()} == {1: True, 2: False, 3: True, 4: False}
    assert (finished[1].size, finished[1].checksum) == (5, xxhash.xxh3_128(b"aaaaa").hexdigest())
    assert finished[2].error_code == "missing_source"
    assert finished[2].error == f"local file not found: {site.local / 'missing-b.exr'}"


def test_run_upload_summary_counts_good_and_failed_files_and_bytes(site: Site) -> None:
    summary = _run(site, _mixed(site), Recorder())

    assert summary == RunSummary(files_ok=2, files_failed=2, bytes_sent=12, stopped=False)


def test_run_upload_still_delivers_the_good_files_when_others_fail(site: Site) -> None:
    _run(site, _mixed(site), Recorder())

    assert (site.storage / "D" / "a.exr").read_bytes() == b"aaaaa"
    assert (site.storage / "D" / "c.exr").read_bytes() == b"ccccccc"
    assert sorted(p.name for p in (site.storage / "D").iterdir()) == ["a.exr", "c.exr"]


def test_run_upload_bytes_events_add_up_to_the_bytes_sent(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copy_module, "CHUNK_SIZE", 3)
    report = Recorder()

    summary = _run(site, _mixed(site), report)

    sent = [e for e in report.events if isinstance(e, BytesSent)]
    assert sum(e.count for e in sent) == summary.bytes_sent == 12
    assert {e.item_id for e in sent} == {1, 3}


@pytest.mark.parametrize("pool_size", [1, 4])
def test_run_upload_delivers_every_file_with_pool_size(site: Site, pool_size: int) -> None:
    contents = {number: os.urandom(1 + number * 997) for number in range(1, 31)}
    tasks = [FileTask(n, str(site.file(f"s{n % 3}/f{n}.bin", c)), f"/D/s{n % 3}/f{n}.bin") for n, c in contents.items()]

    summary = _run(site, tasks, Recorder(), pool_size=pool_size)

    assert summary == RunSummary(files_ok=30, files_failed=0, bytes_sent=sum(map(len, contents.values())), stopped=False)
    assert all((site.storage / "D" / f"s{n % 3}" / f"f{n}.bin").read_bytes() == c for n, c in contents.items())


def test_run_upload_stops_when_the_report_returns_false(site: Site) -> None:
    tasks = [FileTask(n, str(site.file(f"f{n}.bin", b"x" * n)), f"/D/f{n}.bin") for n in range(1, 6)]
    report = Recorder(stop_when=lambda event: isinstance(event, FileFinished))

    summary = _run(site, tasks, report, pool_size=1)

    assert summary == RunSummary(files_ok=1, files_failed=0, bytes_sent=1, stopped=True)
    assert sorted(p.name for p in (site.storage / "D").iterdir()) == ["f1.bin"]
    assert list(report.finished()) == [1]


def test_run_upload_stopped_midway_leaves_no_partial_file(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copy_module, "CHUNK_SIZE", 4)
    tasks = [FileTask(1, str(site.file("big.bin", b"x" * 64)), "/D/big.bin")]
    report = Recorder(stop_when=lambda event: isinstance(event, BytesSent))

    summary = _run(site, tasks, report, pool_size=1)

    assert summary == RunSummary(files_ok=0, files_failed=0, bytes_sent=0, stopped=True)
    assert report.finished() == {}
    assert list((site.storage / "D").iterdir()) == []


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
