"""Tracker: progress of a run per file and per job, fed with engine events, on a clock the test moves."""

from __future__ import annotations

import pytest

from tests.clock import FakeClock
from transfers.engine.events import BytesSent, FileFinished, FileRetrying, FileStarted
from transfers.engine.tracker import FileProgress, Tracker


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _tracker(clock: FakeClock, sizes: dict[int, int]) -> Tracker:
    return Tracker(files_total=len(sizes), bytes_total=sum(sizes.values()), expected=dict(sizes), clock=clock)


def test_tracker_counts_bytes_per_file(clock: FakeClock) -> None:
    tracker = _tracker(clock, {1: 100, 2: 50})
    tracker(FileStarted(1, 100))
    tracker(BytesSent(1, 30))
    tracker(FileStarted(2, 50))
    tracker(BytesSent(2, 10))
    tracker(BytesSent(1, 20))

    assert tracker.snapshot().active == (FileProgress(1, 50, 100), FileProgress(2, 10, 50))


def test_tracker_counts_bytes_for_the_job(clock: FakeClock) -> None:
    tracker = _tracker(clock, {1: 100, 2: 50})
    tracker(BytesSent(1, 30))
    tracker(BytesSent(2, 10))

    snapshot = tracker.snapshot()
    assert (snapshot.bytes_done, snapshot.bytes_total) == (40, 150)


def test_tracker_counts_a_finished_file_as_done_and_no_longer_active(clock: FakeClock) -> None:
    tracker = _tracker(clock, {1: 100})
    tracker(FileStarted(1, 100))
    tracker(BytesSent(1, 100))
    tracker(FileFinished(1, ok=True, size=100))

    snapshot = tracker.snapshot()
    assert (snapshot.files_done, snapshot.bytes_done, snapshot.active) == (1, 100, ())


def test_tracker_counts_a_skipped_file_as_done_with_all_its_bytes(clock: FakeClock) -> None:
    tracker = _tracker(clock, {1: 100, 2: 50})
    tracker(FileFinished(1, ok=True, size=100, skipped=True))

    snapshot = tracker.snapshot()
    assert (snapshot.files_done, snapshot.files_skipped, snapshot.bytes_done) == (1, 1, 100)


def test_tracker_takes_a_failed_file_out_of_the_total(clock: FakeClock) -> None:
    tracker = _tracker(clock, {1: 100, 2: 50})
    tracker(BytesSent(1, 40))
    tracker(FileFinished(1, ok=False, error_code="missing_source"))

    snapshot = tracker.snapshot()
    assert (snapshot.files_failed, snapshot.bytes_total, snapshot.bytes_done) == (1, 50, 0)


def test_tracker_ends_at_the_whole_total_when_some_files_failed(clock: FakeClock) -> None:
    tracker = _tracker(clock, {1: 100, 2: 50})
    tracker(BytesSent(1, 40))
    tracker(FileFinished(1, ok=False, error_code="disk_full"))
    tracker(BytesSent(2, 50))
    tracker(FileFinished(2, ok=True, size=50))

    snapshot = tracker.snapshot()
    assert snapshot.bytes_done == snapshot.bytes_total == 50


def test_tracker_follows_a_file_whose_size_changed_since_the_manifest(clock: FakeClock) -> None:
    tracker = _tracker(clock, {1: 100})
    tracker(BytesSent(1, 120))
    tracker(FileFinished(1, ok=True, size=120))

    snapshot = tracker.snapshot()
    assert (snapshot.bytes_done, snapshot.bytes_total) == (120, 120)


def test_tracker_counts_resumed_bytes_as_done(clock: FakeClock) -> None:
    tracker = _tracker(clock, {1: 100})
    tracker(BytesSent(1, 60, resumed=True))

    assert tracker.snapshot().bytes_done == 60


def test_tracker_speed_excludes_resumed_bytes(clock: FakeClock) -> None:
    tracker = _tracker(clock, {1: 10_000})
    tracker.snapshot()
    tracker(BytesSent(1, 5000, resumed=True))
    clock.now += 1
    tracker(BytesSent(1, 500))

    assert tracker.snapshot().speed == 500.0


def test_tracker_speed_excludes_skipped_files(clock: FakeClock) -> None:
    tracker = _tracker(clock, {1: 10_000, 2: 1000})
    tracker.snapshot()
    tracker(FileFinished(1, ok=True, size=10_000, skipped=True))
    clock.now += 2
    tracker(BytesSent(2, 1000))

    assert tracker.snapshot().speed == 500.0


def test_tracker_eta_is_the_remaining_bytes_over_the_speed(clock: FakeClock) -> None:
    tracker = _tracker(clock, {1: 10_000})
    tracker.snapshot()
    clock.now += 2
    tracker(BytesSent(1, 2000))

    assert tracker.snapshot().eta == 8.0


def test_tracker_eta_is_unknown_before_anything_moved(clock: FakeClock) -> None:
    assert _tracker(clock, {1: 100}).snapshot().eta is None


def test_tracker_starts_from_the_counts_of_an_earlier_run(clock: FakeClock) -> None:
    tracker = Tracker(files_total=4, bytes_total=300, files_done=2, files_skipped=1, files_failed=1, bytes_done=200, clock=clock)

    snapshot = tracker.snapshot()
    assert (snapshot.files_done, snapshot.files_skipped, snapshot.files_failed, snapshot.bytes_done) == (2, 1, 1, 200)


def test_tracker_restarts_a_file_progress_when_it_is_retried(clock: FakeClock) -> None:
    # Attempt 2 resumes the 60 bytes attempt 1 left: the file is at 60 of 100, not 120.
    tracker = _tracker(clock, {1: 100})
    tracker(FileStarted(1, 100))
    tracker(BytesSent(1, 60))
    tracker(FileRetrying(1, attempt=1, delay=0.1, error_code="write_error", error="EIO"))
    tracker(FileStarted(1, 100))
    tracker(BytesSent(1, 60, resumed=True))

    snapshot = tracker.snapshot()
    assert (snapshot.active, snapshot.bytes_done) == ((FileProgress(1, 60, 100),), 60)
