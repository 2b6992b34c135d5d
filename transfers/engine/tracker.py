"""Progress of a run, per file and per job: bytes, files, speed smoothed over the last seconds, ETA."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from transfers.engine.events import BytesSent, Event, FileFinished, FileNotSent, FileStarted
from transfers.engine.meter import RateMeter


@dataclass(frozen=True)
class FileProgress:
    item_id: int
    done: int
    size: int


@dataclass(frozen=True)
class Snapshot:
    files_total: int
    files_done: int  # arrived or skipped as unchanged
    files_skipped: int
    files_failed: int
    bytes_total: int
    bytes_done: int
    speed: float  # bytes per second actually sent (resumed and skipped bytes do not count)
    eta: float | None
    active: tuple[FileProgress, ...]


class Tracker:
    """Fed with engine events from any thread; `expected` gives each file's size known beforehand."""

    def __init__(
        self,
        *,
        files_total: int,
        bytes_total: int,
        expected: dict[int, int | None] | None = None,
        files_done: int = 0,
        files_skipped: int = 0,
        files_failed: int = 0,
        bytes_done: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self.expected = expected or {}
        self.files_total, self.bytes_total = files_total, bytes_total
        self.files_done, self.files_failed, self.files_skipped = files_done, files_failed, files_skipped
        self.bytes_done, self.bytes_sent = bytes_done, 0
        self._active: dict[int, list[int]] = {}  # item -> [done, size]
        self._meter = RateMeter(clock=clock)

    def settle(self, *, files_done: int, files_failed: int, files_skipped: int, bytes_done: int, bytes_total: int) -> None:
        """Counts from the record of what happened (after the run), in place of what this run counted."""
        with self._lock:
            self.files_done, self.files_failed, self.files_skipped = files_done, files_failed, files_skipped
            self.bytes_done, self.bytes_total = bytes_done, bytes_total

    def grow(self, *, files: int, size: int) -> None:
        """More files to come than known at the start (a download finds outputs as it goes)."""
        with self._lock:
            self.files_total += files
            self.bytes_total += size

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, BytesSent):
                state = self._active.setdefault(event.item_id, [0, 0])
                state[0] += event.count
                self.bytes_done += event.count
                if not event.resumed:
                    self.bytes_sent += event.count
            elif isinstance(event, FileStarted):
                # A retry starts the file again: what the failed attempt counted is not done.
                counted = self._active.get(event.item_id, [0, 0])[0]
                self.bytes_done -= counted
                self._active[event.item_id] = [0, event.size]
            elif isinstance(event, FileFinished):
                self._finish(event)
            elif isinstance(event, FileNotSent):
                # Still to do: neither done nor failed; what it wrote is counted again when it resumes.
                self.bytes_done -= self._active.pop(event.item_id, [0, 0])[0]

    def report_many(self, events: Sequence[FileFinished]) -> None:
        """Many finished files at once (the runner's unchanged files): one lock for the lot."""
        with self._lock:
            for event in events:
                self._finish(event)

    def _finish(self, event: FileFinished) -> None:
        counted = self._active.pop(event.item_id, [0, 0])[0]
        expected = self.expected.get(event.item_id) or 0
        if event.ok:
            self.files_done += 1
            self.files_skipped += event.skipped
            self.bytes_total += event.size - expected  # the file may have changed since the manifest
            self.bytes_done += event.size - counted
        else:
            self.files_failed += 1
            self.bytes_total -= expected  # the bar ends at 100% of what could arrive
            self.bytes_done -= counted

    def snapshot(self) -> Snapshot:
        with self._lock:
            self._meter.add(self.bytes_sent)
            remaining = max(0, self.bytes_total - self.bytes_done)
            return Snapshot(
                files_total=self.files_total,
                files_done=self.files_done,
                files_skipped=self.files_skipped,
                files_failed=self.files_failed,
                bytes_total=self.bytes_total,
                bytes_done=self.bytes_done,
                speed=self._meter.speed(),
                eta=self._meter.eta(remaining),
                active=tuple(FileProgress(item, done, size) for item, (done, size) in self._active.items()),
            )
