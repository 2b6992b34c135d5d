"""The transfer runner: many files from a source endpoint to a destination endpoint, `pool_size` at a
time, each failure kept to its own file. Direction-agnostic: an upload reads the user's local files
(endpoints.LocalFiles) into a farm storage area; a download reads a farm area into a local folder.

* Unchanged files (size and mtime as the ledger last saw them, or the same content hash) are skipped.
* Retryable errors (I/O hiccups, a source changed mid-copy, a failed verification) are retried with
  bounded exponential backoff and full jitter, up to `attempts` (the SDK's `upload_num`); fatal ones
  (missing source, permission, bad path) fail the file at once.
* A file starts only when the destination has room for it (engine.space); one that does not fit is
  not sent (FileNotSent, not FileFinished) and the others go on; a disk found full mid-file stops the
  run, keeping the partial file. Either way the run ends stopped, "destination full: needs X, has Y".
* Files are opened through their source endpoint (the local one walks from the root's descriptor:
  no symlink below it is followed at open time, whatever the path looked like when the run planned it).
* Progress goes to one callback as events (engine.events). FileFinished events and ledger writes
  happen in the thread that called run_transfer; byte events come from the pool's threads.
* Control.stop (or the callback returning False) stops cooperatively: partial files stay for a resume.
"""

from __future__ import annotations

import logging
import random
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Protocol

from transfers.engine.endpoints.base import Destination, Source, checksum_of
from transfers.engine.endpoints.files import LocalFiles
from transfers.engine.events import BytesSent, Event, FileFinished, FileNotSent, FileRetrying, FileStarted, Report
from transfers.engine.ledger import Ledger, LedgerRecord
from transfers.engine.localfs import NotAFile
from transfers.engine.paths import PathMap, PathRefused, clean_server_path
from transfers.engine.ratelimit import TokenBucket, max_speed_to_rate
from transfers.engine.send import SendFailed, SendOptions, Stopped, send_file, source_error
from transfers.engine.space import SpaceBudget

logger = logging.getLogger(__name__)

__all__ = [
    "BytesSent",
    "Control",
    "FileFinished",
    "FileNotSent",
    "FileTask",
    "Move",
    "RunSummary",
    "Task",
    "TransferOptions",
    "run_transfer",
    "run_upload",
]


class Task(Protocol):
    """One file to move: its name at the source endpoint and at the destination endpoint."""

    @property
    def item_id(self) -> int: ...
    @property
    def source(self) -> str: ...
    @property
    def destination(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Move:
    """A Task in the endpoints' own terms (a download: a farm area's path -> a local folder's path)."""

    item_id: int
    source: str
    destination: str


@dataclass(frozen=True)
class FileTask:
    """An upload's task, as a manifest names it: a local file and its server path."""

    item_id: int
    local: str
    server: str

    @property
    def source(self) -> str:
        return self.local

    @property
    def destination(self) -> str:
        return self.server


@dataclass(frozen=True)
class TransferOptions:
    pool_size: int = 4
    attempts: int = 3  # the SDK's upload_num
    backoff_base: float = 0.5  # seconds before the 2nd attempt (before jitter); doubles each time
    backoff_cap: float = 30.0
    # How long a file whose partial another writer holds (engine.send: "busy") waits for it, spending no
    # attempt: that writer is a run of the same job still stopping after this one took it over (a Redis
    # restart), or another job writing the same path. Three quick attempts used to fail the file.
    busy_patience: float = 60.0
    busy_poll: float = 0.5
    batch: int = 500  # files per ledger look-up
    prefetch: bool = True  # a source that offers `prefetch` is asked to read each group of small files at once
    send: SendOptions = field(default_factory=SendOptions)

    def __post_init__(self) -> None:
        if self.pool_size < 1 or self.attempts < 1:
            raise ValueError("pool_size and attempts must be at least 1")


class Control:
    """Live controls from outside a run: stop it (pause or cancel), change its speed limit (KB/s)."""

    def __init__(self, max_speed: int | str | None = None) -> None:
        self.stop = threading.Event()
        self.bucket = TokenBucket(max_speed_to_rate(max_speed))
        self.reason = ""

    def set_max_speed(self, max_speed: int | str | None) -> None:
        self.bucket.set_rate(max_speed_to_rate(max_speed))

    def request_stop(self, reason: str = "") -> None:
        self.reason = self.reason or reason
        self.stop.set()


@dataclass(frozen=True)
class RunSummary:
    files_ok: int
    files_failed: int
    files_skipped: int
    bytes_sent: int
    stopped: bool
    stop_reason: str = ""
    files_not_sent: int = 0  # no room at the destination: neither done nor failed, to try again
    bytes_not_sent: int = 0


@dataclass(slots=True)
class _Plan:
    task: Task
    src: str | None = None  # to send (after a re-hash when `recheck` is set)
    decided: FileFinished | None = None  # no sending needed
    recheck: LedgerRecord | None = None
    size: int | None = None  # as the plan saw it; small files travel to the pool in groups


_SMALL = 1 << 20  # files below this go to the pool in groups: one hand-over per file costs more than the copy
_GROUP = 32


def backoff_delay(attempt: int, *, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    return float(rng() * min(cap, base * 2 ** (attempt - 1)))


@dataclass
class _Run:
    source: Source
    storage: Destination
    report: Report
    options: TransferOptions
    control: Control
    ledger: Ledger | None
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    space: SpaceBudget = field(init=False)

    def __post_init__(self) -> None:
        self.space = SpaceBudget(self.storage)

    def tell(self, event: Event) -> None:
        if self.report(event) is False:
            self.control.request_stop("stopped by the caller")

    # --- deciding what to send ------------------------------------------------------------------

    def plan(self, batch: list[Task], skips: list[tuple[Task, FileFinished]]) -> Iterator[_Plan]:
        """What to do with each task: decided at once (bad path), sent by the pool, or unchanged (added
        to `skips`, to be finished together: a re-upload is mostly these)."""
        keys = _keys(batch)
        records = self.ledger.lookup(sorted({key for key in keys if key is not None})) if self.ledger else {}
        stored: dict[str, set[str]] = {}  # folder -> names, listed once per batch
        locate, storage, skip = self.source.locate, self.storage, skips.append
        for task, key in zip(batch, keys, strict=True):
            try:
                source = task.source
                src, info = locate(source)  # for planning: what to skip, what to send
                key = key or _key(task.destination)  # the latter raises with the reason
            except PathRefused as exc:
                yield _Plan(task, decided=FileFinished(task.item_id, ok=False, error_code="bad_path", error=str(exc)))
                continue
            if info is None or not stat.S_ISREG(info.st_mode):
                yield _Plan(task, src)  # send() reports a missing file or a folder on this file
                continue
            record = records.get(key)
            size = info.st_size
            if record is None or record.size != size:
                yield _Plan(task, src, size=size)
                continue
            folder, _, name = key.rpartition("/")
            names = stored.get(folder)
            if names is None:
                try:
                    names = stored[folder] = storage.names(folder)
                except (OSError, PathRefused):
                    names = stored[folder] = set()
            if name not in names:
                yield _Plan(task, src, size=size)
            elif record.mtime_ns == info.st_mtime_ns and record.local == source:
                skip((task, FileFinished(task.item_id, True, size, record.checksum, "", "", True)))  # ok, skipped
            else:
                yield _Plan(task, src, recheck=record, size=size)  # touched, same size: the pool re-hashes it

    def unchanged(self, task: Task, src: str, record: LedgerRecord) -> FileFinished | None:
        """A skip result when `src` still has the recorded content (with its new mtime, to record)."""
        try:
            file = self.source.open_source(src)  # what is actually read: opened safely
        except (OSError, PathRefused, NotAFile):
            return None  # send() reports it
        info = file.info
        try:
            same = info.st_size == record.size and checksum_of(file, info.st_size, like=record.checksum) == record.checksum
        except OSError:
            return None
        finally:
            file.close()
        if not same:
            return None
        return FileFinished(
            task.item_id, ok=True, size=info.st_size, checksum=record.checksum, skipped=True, mtime_ns=info.st_mtime_ns
        )

    # --- sending one file, with retries ---------------------------------------------------------

    def send(self, task: Task, src: str, size: int | None = None) -> FileFinished | FileNotSent:
        key = _key(task.destination)
        stop = self.control.stop
        space = self.space

        def on_bytes(count: int, resumed: bool) -> None:
            if not resumed:
                space.wrote(task.item_id, count)
            self.tell(BytesSent(task.item_id, count, resumed))

        attempt, busy_since = 1, None
        while True:
            try:
                if size is None or attempt > 1:
                    size = self._size_of(src)
                self.tell(FileStarted(task.item_id, size))
                sent = send_file(
                    src,
                    self.storage,
                    key,
                    bucket=self.control.bucket,
                    stop=stop,
                    on_bytes=on_bytes,
                    options=self.options.send,
                    source=self.source,
                )
                return FileFinished(
                    task.item_id,
                    ok=True,
                    size=sent.size,
                    checksum=sent.checksum,
                    attempts=attempt,
                    mtime_ns=sent.mtime_ns,  # as read before sending: a later save is seen next time
                    resumed=sent.resumed_from,
                )
            except PathRefused as exc:  # e.g. a symlink planted in the storage since the plan
                return FileFinished(task.item_id, ok=False, error_code="bad_path", error=str(exc), attempts=attempt)
            except (FileNotFoundError, NotADirectoryError) as exc:  # from the stat for the size
                failed = source_error(exc, src, self.source.where)
                return FileFinished(task.item_id, ok=False, error_code=failed.code, error=str(failed))
            except SendFailed as exc:
                if exc.code == "disk_full":
                    # Someone else filled it meanwhile: stop starting files; the partial stays for a resume.
                    self.control.request_stop(_DESTINATION_FULL)
                    needed = size or 0
                    if needed < self.options.send.range_threshold:  # a ranged partial has the full size from the start
                        needed = max(0, needed - self.storage.partial_size(key))
                    self.space.not_sent(needed)
                    return FileNotSent(task.item_id, needed, str(exc))
                if exc.stops_run:
                    self.control.request_stop(str(exc))
                if exc.code == "busy" and not stop.is_set():
                    busy_since = time.monotonic() if busy_since is None else busy_since
                    if time.monotonic() - busy_since < self.options.busy_patience:
                        if stop.wait(self.options.busy_poll):
                            raise Stopped() from exc
                        continue  # the same attempt again: the file has not failed, it is not ours yet
                if not exc.retryable or attempt == self.options.attempts or stop.is_set():
                    tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                    return FileFinished(task.item_id, ok=False, error_code=exc.code, error=f"{exc}{tries}", attempts=attempt)
                delay = backoff_delay(attempt, base=self.options.backoff_base, cap=self.options.backoff_cap)
                self.tell(FileRetrying(task.item_id, attempt, delay, exc.code, str(exc)))
                if stop.wait(delay):
                    raise Stopped() from exc
                attempt += 1

    def _size_of(self, src: str) -> int:
        """The source's size now; a remote source's lost connection is a retryable read error."""
        try:
            return self.source.stat_source(src).st_size
        except (FileNotFoundError, NotADirectoryError):
            raise
        except OSError as exc:
            raise source_error(exc, src, self.source.where) from exc

    def send_group(self, plans: list[_Plan], records: list[LedgerRecord]) -> None:
        """Send files one after the other in one pool thread; stops early when the run stops. Each file
        is reported as it ends, not when its group does: the files counter moves with the bytes."""
        prefetch = getattr(self.source, "prefetch", None) if self.options.prefetch and len(plans) > 1 else None
        if prefetch is not None:  # a local source: the group's reads overlap instead of queueing one by one
            prefetch([plan.src for plan in plans if plan.src is not None])
        for plan in plans:
            result = self.guarded_send(plan)
            if result is None:
                break
            self.finish(result, plan.task, records)

    def guarded_send(self, plan: _Plan) -> FileFinished | FileNotSent | None:
        """None when stopped; a failed result (never an exception) for anything unexpected."""
        if self.control.stop.is_set():
            return None
        task, src = plan.task, plan.src
        assert src is not None
        try:
            if plan.recheck is not None and (skip := self.unchanged(task, src, plan.recheck)) is not None:
                return skip
            size = plan.size or 0
            if not self.space.reserve(task.item_id, size, self.control.stop):
                if self.control.stop.is_set():
                    return None
                if not self._fits_with_partial(plan):
                    self.space.not_sent(size)
                    return FileNotSent(task.item_id, size, "no room at the destination")
            return self.send(task, src, plan.size)
        except Stopped:
            return None
        except Exception as exc:  # a bug must cost one file, not the run
            logger.exception("unexpected error sending %s", src)
            return FileFinished(
                task.item_id, ok=False, error_code="internal", error=f"unexpected error: {type(exc).__name__}: {exc}"
            )
        finally:
            self.space.release(task.item_id)

    def _fits_with_partial(self, plan: _Plan) -> bool:
        """Whether a partial file kept from an earlier attempt leaves little enough to write.

        Asked only when the whole file does not fit: a stat per file is not paid on every run. A
        ranged partial is sized to the whole file from the start, so it counts for nothing here.
        """
        size = plan.size or 0
        if size >= self.options.send.range_threshold:
            return False
        try:
            kept = min(size, self.storage.partial_size(_key(plan.task.destination)))
        except (OSError, PathRefused):
            return False
        return kept > 0 and self.space.reserve(plan.task.item_id, size - kept)

    # --- results --------------------------------------------------------------------------------

    def finish_skipped(self, skips: list[tuple[Task, FileFinished]]) -> None:
        """Files found unchanged while planning (nothing to record), counted and reported together:
        one lock and, when the callback takes them (`report_many`), one call for the lot."""
        if not skips:
            return
        with self._lock:
            self.ok += len(skips)
            self.skipped += len(skips)
        results = [result for _, result in skips]
        report_many = getattr(self.report, "report_many", None)
        if report_many is None:
            for result in results:
                self.tell(result)
        elif report_many(results) is False:
            self.control.request_stop("stopped by the caller")

    def finish(self, result: FileFinished | FileNotSent, task: Task, pending_records: list[LedgerRecord]) -> None:
        with self._lock:  # pool threads and the planning thread both finish files
            if isinstance(result, FileNotSent):
                pass  # counted by self.space
            elif result.ok:
                self.ok += 1
                if result.skipped:
                    self.skipped += 1
                else:
                    self.sent += result.size - result.resumed
                if self.ledger is not None and (not result.skipped or result.mtime_ns):
                    record = LedgerRecord(_key(task.destination), task.source, result.size, result.mtime_ns, result.checksum)
                    pending_records.append(record)
            else:
                self.failed += 1
        self.tell(result)


_DESTINATION_FULL = "destination full"  # replaced by the figures when the run ends


def _key(server: str) -> str:
    return clean_server_path(server)


def _keys(batch: list[Task]) -> list[str | None]:
    """Ledger keys (clean destination paths) of the tasks, in order; None where the path is refused."""
    keys: list[str | None] = []
    for task in batch:
        try:
            keys.append(_key(task.destination))
        except PathRefused:
            keys.append(None)  # fails on its own in plan(), with the reason
    return keys


def _batches(tasks: Iterable[Task], size: int) -> Iterator[list[Task]]:
    iterator = iter(tasks)
    while batch := list(islice(iterator, size)):
        yield batch


def run_upload(
    tasks: Iterable[FileTask],
    *,
    storage: Destination,
    allowed_roots: Sequence[Path],
    report: Report,
    options: TransferOptions | None = None,
    control: Control | None = None,
    ledger: Ledger | None = None,
    path_map: PathMap | None = None,
) -> RunSummary:
    """Local files (below `allowed_roots`, through `path_map`) into `storage`: run_transfer from LocalFiles."""
    source = LocalFiles(allowed_roots, path_map)
    try:
        return run_transfer(source, storage, tasks, report=report, options=options, control=control, ledger=ledger)
    finally:
        source.close()


def run_transfer(
    source: Source,
    destination: Destination,
    tasks: Iterable[Task],
    *,
    report: Report,
    options: TransferOptions | None = None,
    control: Control | None = None,
    ledger: Ledger | None = None,
) -> RunSummary:
    """Move each task's file from `source` to `destination`; the ledger is keyed by destination path.

    Either endpoint may be used again after the run (it reopens what it needs); the caller closes it.
    """
    options = options or TransferOptions()
    control = control or Control()
    storage = destination
    run = _Run(source, destination, report, options, control, ledger)
    records: list[LedgerRecord] = []  # appended by the pool threads under run._lock
    in_flight: set[Future[None]] = set()

    def collect(done: Iterable[Future[None]]) -> None:
        for future in done:
            in_flight.discard(future)
            future.result()
        with run._lock:
            full = records[:] if len(records) >= options.batch else []
            if full:
                records.clear()
        if ledger is not None and full:
            ledger.record(full)

    with ThreadPoolExecutor(max_workers=options.pool_size, thread_name_prefix="rvweb-send") as pool:

        def submit(plans: list[_Plan]) -> None:
            in_flight.add(pool.submit(run.send_group, plans, records))
            if len(in_flight) >= 2 * options.pool_size:  # bounded: memory stays flat for huge runs
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                collect(done)

        for batch in _batches(tasks, options.batch):
            small: list[_Plan] = []
            skips: list[tuple[Task, FileFinished]] = []
            for plan in run.plan(batch, skips):
                if control.stop.is_set():
                    break
                if plan.decided is not None:
                    run.finish(plan.decided, plan.task, records)
                elif plan.size is not None and plan.size < _SMALL:
                    small.append(plan)
                    if len(small) >= _GROUP:
                        submit(small)
                        small = []
                else:
                    if small:  # keep the manifest's order, roughly: what came first starts first
                        submit(small)
                        small = []
                    submit([plan])
            if small and not control.stop.is_set():
                submit(small)
            run.finish_skipped(skips)
            if control.stop.is_set():
                break
        collect(list(in_flight))
    if ledger is not None and records:
        ledger.record(records)
    space, reason = run.space, control.reason
    if space.files_not_sent and reason in ("", _DESTINATION_FULL):
        reason = space.reason(getattr(storage, "label", "the destination"))
    return RunSummary(
        run.ok,
        run.failed,
        run.skipped,
        run.sent,
        control.stop.is_set() or space.files_not_sent > 0,
        reason,
        files_not_sent=space.files_not_sent,
        bytes_not_sent=space.bytes_not_sent,
    )
