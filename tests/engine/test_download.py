"""run_transfer the other way (issue 7 item 1): a farm storage area is the source, a local folder under
an allowed root the destination. Resume after a stop, verification, retries, the ledger, the speed
limit and the space budget work as they do for uploads; the fixtures are test_runner's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import xxhash

from tests.engine.disks import limited_disk
from tests.engine.test_runner import QUICK_RETRIES, ClockedBucket, FlakyStorage, Recorder
from transfers.engine.endpoints import LocalFolder
from transfers.engine.events import BytesSent, FileNotSent, FileRetrying, FileStarted
from transfers.engine.ledger import LedgerRecord, MemoryLedger
from transfers.engine.paths import PARTIAL_SUFFIX, PathRefused
from transfers.engine.ratelimit import max_speed_to_rate
from transfers.engine.runner import Control, FileTask, Move, RunSummary, TransferOptions, run_transfer, run_upload
from transfers.engine.send import SendOptions

KIB = 1 << 10
AREA_LABEL = 'output storage of farm account "farm"'


@dataclass
class Farm:
    """A farm's output area (the source) and a user's home (the allowed root) holding the download folder."""

    area: Path
    home: Path

    @property
    def local(self) -> Path:
        return self.home / "renderfarm_sdk"

    def frame(self, server: str, content: bytes) -> str:
        path = self.area / server
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return server

    def arrived(self) -> list[str]:
        """Files at their final names in the download folder."""
        files = (p for p in self.local.rglob("*") if p.is_file() and PARTIAL_SUFFIX not in p.name)
        return sorted(p.relative_to(self.local).as_posix() for p in files)

    def source(self) -> LocalFolder:
        return LocalFolder(self.area, label=AREA_LABEL)

    def destination(self) -> LocalFolder:
        return LocalFolder(self.local, label=f"local folder {self.local}", where="the local folder", allowed_roots=[self.home])


@pytest.fixture
def farm(tmp_path: Path) -> Farm:
    (tmp_path / "farm" / "output").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    return Farm(area=tmp_path / "farm" / "output", home=tmp_path / "home")


def _download(
    farm: Farm,
    tasks: list[Move],
    report: Recorder | None = None,
    *,
    destination: Any = None,
    control: Control | None = None,
    ledger: MemoryLedger | None = None,
    **options: Any,
) -> RunSummary:
    source, local = farm.source(), farm.destination()
    try:
        return run_transfer(
            source,
            destination if destination is not None else local,
            tasks,
            report=report if report is not None else Recorder(),
            options=TransferOptions(**options),
            control=control,
            ledger=ledger,
        )
    finally:
        source.close()
        local.close()


def _frames(farm: Farm, count: int, size: int = 100) -> list[Move]:
    """Frames 1..count of task 12 on the farm, downloaded as `12_scene/...` (download_filename_format="true")."""
    return [Move(n, farm.frame(f"12/f{n:04d}.exr", bytes([n]) * size), f"12_scene/f{n:04d}.exr") for n in range(1, count + 1)]


def _checksum(data: bytes) -> str:
    return f"xxh3-128:{xxhash.xxh3_128(data).hexdigest()}"


# delivery


def test_download_delivers_every_frame_with_its_checksum_and_nothing_else(farm: Farm) -> None:
    report = Recorder()

    summary = _download(farm, _frames(farm, 5), report)

    assert summary == RunSummary(files_ok=5, files_failed=0, files_skipped=0, bytes_sent=500, stopped=False)
    assert farm.arrived() == [f"12_scene/f{n:04d}.exr" for n in range(1, 6)]
    assert all((farm.local / f"12_scene/f{n:04d}.exr").read_bytes() == bytes([n]) * 100 for n in range(1, 6))
    assert {n: e.checksum for n, e in report.finished().items()} == {n: _checksum(bytes([n]) * 100) for n in range(1, 6)}


def test_download_reports_each_frame_started_then_its_bytes_then_finished(farm: Farm) -> None:
    report = Recorder()

    _download(farm, _frames(farm, 1, size=300), report, send=SendOptions(chunk=100, kernel_chunk=100))

    assert [type(e).__name__ for e in report.events] == ["FileStarted", "BytesSent", "BytesSent", "BytesSent", "FileFinished"]
    assert report.of(FileStarted) == [FileStarted(1, 300)]


def test_download_makes_the_local_folder_below_the_allowed_root_0755(farm: Farm) -> None:
    old = os.umask(0o077)
    try:
        _download(farm, _frames(farm, 1))
    finally:
        os.umask(old)

    modes = [oct(p.stat().st_mode & 0o777) for p in (farm.local, farm.local / "12_scene", farm.local / "12_scene/f0001.exr")]
    assert modes == ["0o755", "0o755", "0o644"]


def test_a_round_trip_up_and_down_gives_back_the_same_bytes_and_checksums(farm: Farm, tmp_path: Path) -> None:
    studio = tmp_path / "studio"
    contents = {n: os.urandom(1 + n * 4099) for n in range(1, 6)}
    for n, data in contents.items():
        (studio / f"s{n}.exr").parent.mkdir(exist_ok=True)
        (studio / f"s{n}.exr").write_bytes(data)
    up, down = Recorder(), Recorder()

    run_upload(
        [FileTask(n, str(studio / f"s{n}.exr"), f"/7/s{n}.exr") for n in contents],
        storage=LocalFolder(farm.area),
        allowed_roots=[studio],
        report=up,
    )
    _download(farm, [Move(n, f"7/s{n}.exr", f"7_scene/s{n}.exr") for n in contents], down)

    assert all((farm.local / f"7_scene/s{n}.exr").read_bytes() == data for n, data in contents.items())
    assert {n: e.checksum for n, e in down.finished().items()} == {n: e.checksum for n, e in up.finished().items()}


# failures, each kept to its frame


def test_download_names_a_frame_missing_on_the_farm_and_fetches_the_others(farm: Farm) -> None:
    tasks = [*_frames(farm, 1), Move(2, "12/f0002.exr", "12_scene/f0002.exr")]
    report = Recorder()

    summary = _download(farm, tasks, report, attempts=5)

    missing = report.finished()[2]
    assert (summary.files_ok, summary.files_failed) == (1, 1)
    assert (missing.error_code, missing.error, missing.attempts) == (
        "missing_source",
        "file not found on the farm storage: 12/f0002.exr",
        1,
    )
    assert farm.arrived() == ["12_scene/f0001.exr"]


def test_download_retries_a_flaky_local_disk_until_it_passes(farm: Farm) -> None:
    report = Recorder()
    flaky = FlakyStorage(farm.destination(), failures=2)

    _download(farm, _frames(farm, 1), report, destination=flaky, attempts=3, **QUICK_RETRIES)

    assert [(e.attempt, e.error_code) for e in report.of(FileRetrying)] == [(1, "write_error"), (2, "write_error")]
    assert (report.finished()[1].ok, report.finished()[1].attempts) == (True, 3)
    assert (farm.local / "12_scene/f0001.exr").read_bytes() == bytes([1]) * 100


def test_download_fails_after_the_last_attempt_naming_the_attempts(farm: Farm) -> None:
    report = Recorder()
    flaky = FlakyStorage(farm.destination(), failures=99)

    _download(farm, _frames(farm, 1), report, destination=flaky, attempts=2, **QUICK_RETRIES)

    finished = report.finished()[1]
    assert (finished.ok, finished.error) == (False, "cannot write 12_scene/f0001.exr: Input/output error (after 2 attempts)")
    assert farm.arrived() == []


def test_download_refuses_bytes_that_arrived_wrong_and_fetches_the_frame_again(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pwrite, flipped = os.pwrite, list[int]()

    def flip_once(fd: int, data: Any, position: int) -> int:
        if not flipped:
            flipped.append(position)
            data = bytes([data[0] ^ 0xFF]) + bytes(data[1:])
        return real_pwrite(fd, data, position)

    monkeypatch.setattr(os, "pwrite", flip_once)
    report = Recorder()

    summary = _download(farm, _frames(farm, 1, size=4 * KIB), report, send=SendOptions(kernel_copy=False), **QUICK_RETRIES)

    assert [e.error_code for e in report.of(FileRetrying)] == ["verify_failed"]
    assert (summary.files_ok, (farm.local / "12_scene/f0001.exr").read_bytes()) == (1, bytes([1]) * 4 * KIB)


def test_download_retries_a_frame_still_being_written_and_keeps_the_finished_bytes(farm: Farm) -> None:
    (task,) = _frames(farm, 1, size=64 * KIB)

    def still_rendering(event: Any) -> None:
        if isinstance(event, BytesSent) and not report.of(FileRetrying) and len(report.of(BytesSent)) == 1:
            with open(farm.area / task.source, "ab") as handle:
                handle.write(b"the rest of the frame")

    report = Recorder(then=still_rendering)

    _download(farm, [task], report, send=SendOptions(chunk=16 * KIB, kernel_chunk=16 * KIB), **QUICK_RETRIES)

    assert [e.error for e in report.of(FileRetrying)] == [
        "file on the farm storage changed while it was being sent: 12/f0001.exr"
    ]
    assert (farm.local / task.destination).read_bytes() == bytes([1]) * 64 * KIB + b"the rest of the frame"


# stop and resume


def test_download_stopped_midway_keeps_the_partial_and_nothing_at_the_final_name(farm: Farm) -> None:
    report = Recorder(stop_when=lambda e: isinstance(e, BytesSent))

    summary = _download(farm, _frames(farm, 1, size=64), report, pool_size=1, send=SendOptions(chunk=4, kernel_chunk=4))

    assert (summary.stopped, report.finished(), farm.arrived()) == (True, {}, [])
    with farm.destination() as local:
        assert local.partial_size("12_scene/f0001.exr") == 4


def test_download_resumes_a_stopped_frame_from_its_verified_prefix(farm: Farm) -> None:
    tasks = _frames(farm, 1, size=64 * KIB)
    small = SendOptions(chunk=4 * KIB, kernel_chunk=4 * KIB)
    _download(farm, tasks, Recorder(stop_when=lambda e: isinstance(e, BytesSent)), pool_size=1, send=small)
    report = Recorder()

    summary = _download(farm, tasks, report, pool_size=1, send=small)

    resumed = [e.count for e in report.of(BytesSent) if e.resumed]
    assert resumed == [4 * KIB]
    assert (summary.bytes_sent, report.finished()[1].resumed) == (60 * KIB, 4 * KIB)
    assert (farm.local / "12_scene/f0001.exr").read_bytes() == bytes([1]) * 64 * KIB
    assert report.finished()[1].checksum == _checksum(bytes([1]) * 64 * KIB)


def test_download_resumes_a_large_frame_in_ranges_after_a_stop(farm: Farm) -> None:
    data = os.urandom(256 * KIB)
    tasks = [Move(1, farm.frame("12/big.exr", data), "12_scene/big.exr")]
    ranged = SendOptions(chunk=16 * KIB, kernel_chunk=16 * KIB, range_size=64 * KIB, range_threshold=128 * KIB)
    first = Recorder(stop_when=lambda e: isinstance(e, BytesSent) and sum(x.count for x in first.of(BytesSent)) >= 128 * KIB)
    _download(farm, tasks, first, pool_size=1, send=ranged)
    report = Recorder()

    _download(farm, tasks, report, pool_size=1, send=ranged)

    assert 0 < report.finished()[1].resumed < len(data)
    assert (farm.local / "12_scene/big.exr").read_bytes() == data


def test_download_stopped_by_control_fetches_nothing(farm: Farm) -> None:
    control = Control()
    control.request_stop("paused by alice")

    summary = _download(farm, _frames(farm, 3), control=control)

    assert (summary.stopped, summary.stop_reason, farm.arrived()) == (True, "paused by alice", [])


# the ledger: keyed by the local path, remembering the farm path it came from


def test_download_records_each_frame_by_its_local_path(farm: Farm) -> None:
    ledger = MemoryLedger()

    _download(farm, _frames(farm, 1), ledger=ledger)

    mtime = (farm.area / "12/f0001.exr").stat().st_mtime_ns
    assert ledger.records == {
        "12_scene/f0001.exr": LedgerRecord("12_scene/f0001.exr", "12/f0001.exr", 100, mtime, _checksum(bytes([1]) * 100))
    }


def test_download_skips_frames_it_already_fetched(farm: Farm) -> None:
    ledger, tasks = MemoryLedger(), _frames(farm, 3)
    _download(farm, tasks, ledger=ledger)
    report = Recorder()

    summary = _download(farm, tasks, report, ledger=ledger)

    assert (summary.files_skipped, summary.bytes_sent, report.of(BytesSent)) == (3, 0, [])


def test_download_fetches_again_a_frame_rendered_again_at_the_same_size(farm: Farm) -> None:
    ledger, tasks = MemoryLedger(), _frames(farm, 2)
    _download(farm, tasks, ledger=ledger)
    (farm.area / "12/f0002.exr").write_bytes(b"z" * 100)
    os.utime(farm.area / "12/f0002.exr", ns=(10**18, 10**18))

    summary = _download(farm, tasks, ledger=ledger)

    assert (summary.files_skipped, summary.bytes_sent) == (1, 100)
    assert (farm.local / "12_scene/f0002.exr").read_bytes() == b"z" * 100


def test_download_fetches_again_a_frame_deleted_locally(farm: Farm) -> None:
    ledger, tasks = MemoryLedger(), _frames(farm, 1)
    _download(farm, tasks, ledger=ledger)
    (farm.local / "12_scene/f0001.exr").unlink()

    summary = _download(farm, tasks, ledger=ledger)

    assert (summary.files_skipped, summary.bytes_sent, farm.arrived()) == (0, 100, ["12_scene/f0001.exr"])


# the speed limit and the space budget


def test_download_passes_every_byte_through_the_jobs_one_bucket(farm: Farm) -> None:
    control = Control()
    bucket = ClockedBucket(max_speed_to_rate(512))
    control.bucket = bucket

    _download(farm, _frames(farm, 3, size=300 * KIB), control=control, pool_size=3)

    assert sum(count for count, _ in bucket.takes) == 3 * 300 * KIB
    assert len(farm.arrived()) == 3


@pytest.fixture
def small_home(farm: Farm, monkeypatch: pytest.MonkeyPatch) -> Iterator[Farm]:
    """The download folder holds 1 MiB (emulated: free space and ENOSPC computed from what it holds)."""
    with limited_disk(farm.local, 1 << 20, monkeypatch, emulated=True):
        yield farm


def test_download_fetches_what_fits_and_leaves_the_rest_unsent_naming_the_shortfall(small_home: Farm) -> None:
    tasks = _frames(small_home, 3, size=300 * KIB)  # with the budget's 256 KiB margin, two fit
    report = Recorder()

    summary = _download(small_home, tasks, report, pool_size=1)

    assert (summary.files_ok, summary.files_not_sent, summary.stopped) == (2, 1, True)
    assert summary.stop_reason.startswith("destination full: needs 307.2 kB, has ")
    assert summary.stop_reason.endswith(f" on local folder {small_home.local}")
    assert [e.needed for e in report.of(FileNotSent)] == [300 * KIB]


# paths


def test_a_download_folder_outside_the_allowed_roots_is_refused(farm: Farm, tmp_path: Path) -> None:
    with pytest.raises(PathRefused, match="outside the allowed roots"):
        LocalFolder(tmp_path / "elsewhere", allowed_roots=[farm.home])
    assert not (tmp_path / "elsewhere").exists()


def test_a_download_folder_reached_through_a_symlink_is_refused(farm: Farm, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (farm.home / "link").symlink_to(tmp_path / "outside")

    with pytest.raises(PathRefused, match="symlink"):
        LocalFolder(farm.home / "link" / "renders", allowed_roots=[farm.home])
    assert list((tmp_path / "outside").iterdir()) == []


def test_download_fails_a_farm_frame_that_links_out_of_the_area_as_a_bad_path(farm: Farm, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_bytes(b"secret")
    (farm.area / "12").mkdir()
    (farm.area / "12" / "leak.exr").symlink_to(tmp_path / "secret.txt")
    report = Recorder()

    _download(farm, [Move(1, "12/leak.exr", "12_scene/leak.exr")], report)

    assert report.finished()[1].error_code == "bad_path"
    assert farm.arrived() == []


def test_download_never_writes_through_a_local_folder_swapped_for_a_symlink(farm: Farm, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (farm.local).mkdir()
    (farm.local / "12_scene").symlink_to(outside)
    report = Recorder()

    _download(farm, _frames(farm, 2), report)

    assert {e.error_code for e in report.finished().values()} == {"bad_path"}
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("local", ["../escape.exr", "12_scene/../../escape.exr", "12_scene/.f.exr.rvpart"])
def test_download_fails_a_local_path_that_climbs_out_or_takes_a_reserved_name(farm: Farm, local: str) -> None:
    tasks = [Move(1, farm.frame("12/f.exr", b"f"), local), Move(2, farm.frame("12/g.exr", b"g"), "g.exr")]
    report = Recorder()

    summary = _download(farm, tasks, report)

    assert (summary.files_ok, summary.files_failed, report.finished()[1].error_code) == (1, 1, "bad_path")
    assert farm.arrived() == ["g.exr"] and not (farm.home / "escape.exr").exists()
