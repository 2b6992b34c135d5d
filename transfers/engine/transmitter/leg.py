"""Many files through the transmitter: one process per attempt, for the files not done yet.

Upload: an upload.json `{"asset": [{"local", "server"}]}` of the pending files, `-T upload_json`.
Each "file done (<local>)" finishes its file with the size and rvweb's checksum computed here from the
local file (the transmitter checks nothing, SDK bug #12); "file fail" fails that file with its reason.

Download: a list file of remote paths (one a line), `-T download_list -L <staging> -R <list>` with
keep_path "true", so each file lands at <staging>/<remote path>; the staging folder is made by us
inside the (already checked) destination root, so the final move is a rename on one filesystem. Each
file is checked (the expected size when known, then hashed) and renamed into place through folder
descriptors opened without following symlinks: a symlink swapped into the destination is replaced,
never written through. A wrong size is a failed verification: retryable, the file is fetched again.

Attempts: exit 0 ends the leg; exit 1 ("should retry", an unreachable line) runs again for the files
not done, after a bounded exponential backoff with jitter, at most `options.attempts` runs (never the
SDK's hot loop, bugs #1 and #2); a fatal exit fails the files left, with its message. A stop leaves
unfinished files pending. A speed change (control.bucket's rate) restarts the process with the new
`-s`, spending no attempt.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from transfers.engine.events import BytesSent, Event, FileFinished, FileRetrying, FileStarted, Report
from transfers.engine.hashing import fd_checksum
from transfers.engine.localfs import LocalTree, NotAFile
from transfers.engine.paths import PathRefused, clean_server_path
from transfers.engine.runner import Control, Move, RunSummary, TransferOptions, backoff_delay
from transfers.engine.transmitter.command import SDK_MAX_SPEED, TransmitSpec, TransmitType
from transfers.engine.transmitter.output import FileBegin, FileDone, FileFail, FileProgress, OutputEvent
from transfers.engine.transmitter.process import UNREACHABLE, ProcessResult, run_transmitter

Direction = Literal["upload", "download"]
SpecFactory = Callable[[TransmitType, str, str, "int | None"], TransmitSpec]
DIR_MODE = 0o700
FILE_MODE = 0o600  # manifests name the user's files: nobody else reads them
PLACED_MODE = 0o644  # a downloaded file, as endpoints.local writes them
_MIN_DELAY_SHARE = 0.5  # of backoff_base: full jitter alone may draw ~0 s, which is a hot loop


@dataclass
class _Item:
    move: Move
    key: str  # the clean destination (upload: server path; download: local path below the root)
    remote: str = ""  # download: the clean remote path
    size: int | None = None
    reported: int = 0  # bytes told through BytesSent
    started: bool = False
    error_code: str = ""  # the last retryable failure, kept for when the attempts run out
    error: str = ""


@dataclass
class _Leg:
    direction: Direction
    spec: SpecFactory
    work_dir: Path
    destination_root: Path | None
    report: Report
    control: Control
    options: TransferOptions
    pending: dict[int, _Item] = field(default_factory=dict)
    by_path: dict[str, list[int]] = field(default_factory=dict)
    ok: int = 0
    failed: int = 0
    sent: int = 0
    attempt: int = 1
    secrets: Mapping[str, str] | None = None
    staging: Path | None = None
    tree: LocalTree | None = None
    root_fd: int | None = None  # the destination root, opened once checked (download)
    staging_fd: int | None = None
    handles: Mapping[int, int] = field(default_factory=dict)  # upload: item id -> the caller's open descriptor

    # --- reporting ------------------------------------------------------------------------------

    def tell(self, event: Event) -> None:
        if self.report(event) is False:
            self.control.request_stop("stopped by the caller")

    def finish(self, item: _Item, result: FileFinished) -> None:
        self.pending.pop(item.move.item_id, None)
        if result.ok:
            self.ok += 1
            self.sent += result.size
            if result.size > item.reported:
                self.tell(BytesSent(item.move.item_id, result.size - item.reported))
        else:
            self.failed += 1
        self.tell(result)

    def fail(self, item: _Item, code: str, error: str) -> None:
        self.finish(item, FileFinished(item.move.item_id, ok=False, error_code=code, error=error, attempts=self.attempt))

    # --- the transmitter's output ---------------------------------------------------------------

    def items_for(self, path: str) -> list[_Item]:
        return [self.pending[i] for i in self.by_path.get(path, ()) if i in self.pending]

    def on_event(self, event: OutputEvent) -> None:
        if not isinstance(event, FileBegin | FileProgress | FileDone | FileFail):
            return
        for item in self.items_for(event.path):
            if isinstance(event, FileBegin):
                self.start(item)
            elif isinstance(event, FileProgress):
                self.progress(item, event)
            elif isinstance(event, FileDone):
                self.done(item)
            else:
                self.fail(item, "transmitter", f"the transmitter failed {event.path}: {event.reason}")

    def start(self, item: _Item) -> None:
        if not item.started:
            item.started = True
            self.tell(FileStarted(item.move.item_id, item.size or 0))

    def progress(self, item: _Item, event: FileProgress) -> None:
        self.start(item)
        total = item.size if item.size is not None else event.total
        if event.done is not None:
            done = event.done
        elif event.percent is not None and total:
            done = int(total * min(event.percent, 100.0) / 100)
        else:
            return
        if done > item.reported:
            self.tell(BytesSent(item.move.item_id, done - item.reported))
            item.reported = done

    def done(self, item: _Item) -> None:
        self.start(item)
        if self.direction == "upload":
            self.finish(item, self.uploaded(item))
        else:
            self.place(item)

    # --- upload ---------------------------------------------------------------------------------

    def uploaded(self, item: _Item) -> FileFinished:
        """The result of a file the transmitter says it sent, checksummed here from the local file (from
        the caller's open descriptor of it when it gave one: the very file the transmitter was given)."""
        local = item.move.source
        held = self.handles.get(item.move.item_id)
        if held is not None:
            info = os.fstat(held)
            return FileFinished(
                item.move.item_id, ok=True, size=info.st_size, checksum=fd_checksum(held), attempts=self.attempt,
                mtime_ns=info.st_mtime_ns,
            )  # fmt: skip
        try:
            fd = os.open(local, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            error = f"cannot read {local}: {exc.strerror}"
            return FileFinished(item.move.item_id, ok=False, error_code="read_error", error=error, attempts=self.attempt)
        try:
            info = os.fstat(fd)
            checksum = fd_checksum(fd)
        finally:
            os.close(fd)
        return FileFinished(
            item.move.item_id, ok=True, size=info.st_size, checksum=checksum, attempts=self.attempt, mtime_ns=info.st_mtime_ns
        )

    def upload_manifest(self) -> Path:
        assets = [{"local": item.move.source, "server": "/" + item.key} for item in self.pending.values()]
        return self.write("upload.json", json.dumps({"asset": assets}, ensure_ascii=False))

    # --- download -------------------------------------------------------------------------------

    def download_list(self) -> Path:
        return self.write("download.list", "".join(f"/{item.remote}\n" for item in self.pending.values()))

    def place(self, item: _Item) -> None:
        """Check the staged copy of `item` and rename it into place; a bad one stays pending (retry)."""
        assert self.tree is not None and self.staging is not None and self.destination_root is not None
        staged = self.staging / item.remote
        try:
            fd, info = self.tree.open_file(staged)
        except (OSError, PathRefused, NotAFile) as exc:
            item.error_code, item.error = "verify_failed", f"{item.remote} was not downloaded: {exc}"
            return
        try:
            if item.size is not None and info.st_size != item.size:
                item.error_code = "verify_failed"
                item.error = f"{item.remote}: downloaded {info.st_size} bytes, expected {item.size}"
                os.unlink(staged)  # fetched again on the next attempt
                return
            checksum = fd_checksum(fd)
            os.fchmod(fd, PLACED_MODE)
            self.move_into_place(item, info)
        except PathRefused as exc:
            self.fail(item, "bad_path", str(exc))
            return
        except OSError as exc:
            self.fail(item, "write_error", f"cannot put {item.key} in place: {exc.strerror or exc}")
            return
        finally:
            os.close(fd)
        self.finish(item, FileFinished(item.move.item_id, ok=True, size=info.st_size, checksum=checksum, attempts=self.attempt))

    def move_into_place(self, item: _Item, info: os.stat_result) -> None:
        """rename(2) between two folder descriptors walked without following symlinks: a symlink at the
        final name is replaced, not followed; the staged name must still be the file that was checked."""
        assert self.tree is not None and self.staging is not None and self.destination_root is not None
        staged_folder, _, staged_name = (self.staging / item.remote).as_posix().rpartition("/")
        final = self.destination_root / item.key
        with self.tree.folder(staged_folder) as src_fd, self.tree.folder(str(final.parent), create=True) as dst_fd:
            now = os.stat(staged_name, dir_fd=src_fd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                raise PathRefused(f"{item.remote} was replaced in the staging folder while it was being checked")
            try:
                existing = os.stat(final.name, dir_fd=dst_fd, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                raise PathRefused(f"local path is a folder, not a file: {final}")
            os.replace(staged_name, final.name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)

    def make_staging(self) -> None:
        """The staging folder, made and opened through the checked root's descriptor; both stay open
        for the leg, so the transmitter writes into the folder made here (staging_path) and the
        clean-up removes that one, whatever is swapped in at their names meanwhile."""
        assert self.destination_root is not None
        self.root_fd = os.open(self.destination_root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        name = f".rvweb-transmitter-{secrets.token_hex(6)}"
        os.mkdir(name, DIR_MODE, dir_fd=self.root_fd)
        self.staging_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.root_fd)
        self.staging = self.destination_root / name
        self.tree = LocalTree([self.destination_root])

    def staging_path(self) -> str:
        """The staging folder as the transmitter is told it: the worker's own descriptor of it
        (/proc/<pid>/fd/<n>), so a symlink swapped in at the destination's path is never written through."""
        assert self.staging is not None and self.staging_fd is not None
        handle = f"/proc/{os.getpid()}/fd/{self.staging_fd}"
        return handle if os.path.isdir(handle) else str(self.staging)

    def drop_staging(self) -> None:
        if self.tree is not None:
            self.tree.close()
        if self.staging_fd is not None:
            os.close(self.staging_fd)
            self.staging_fd = None
        if self.root_fd is not None and self.staging is not None:
            try:
                shutil.rmtree(self.staging.name, dir_fd=self.root_fd, ignore_errors=True)
            finally:
                os.close(self.root_fd)
                self.root_fd = None

    # --- files and runs -------------------------------------------------------------------------

    def write(self, name: str, text: str) -> Path:
        path = self.work_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        return path

    def run_once(self) -> ProcessResult:
        speed = _kbps(self.control)
        if self.direction == "upload":
            spec = self.spec("upload_json", str(self.upload_manifest()), "/", speed)
            known = [item.move.source for item in self.pending.values()]
        else:
            assert self.staging is not None
            asked = self.spec("download_list", self.staging_path(), str(self.download_list()), speed)
            spec = dataclasses.replace(asked, keep_path="true")  # files land at <staging>/<remote path>
            known = [*self.by_path]
        log_dir = self.work_dir / "log"
        log_dir.mkdir(mode=DIR_MODE, exist_ok=True)
        return run_transmitter(
            spec,
            log_dir=log_dir,
            stop=self.control.stop,
            should_stop=lambda: _kbps(self.control) != speed,
            on_event=self.on_event,
            known=known,
            secrets=self.secrets,
        )

    def after_success(self) -> None:
        """Exit 0 says every file is done: uploads not named in its output are taken as done (and
        checksummed); downloads are checked from the staging folder, named or not."""
        for item in list(self.pending.values()):
            if not item.error_code:  # already checked and found wrong in this run: keep that reason
                self.done(item)

    def give_up(self, result: ProcessResult) -> None:
        runs = f" (after {self.attempt} runs)" if self.attempt > 1 else ""
        for item in list(self.pending.values()):
            if result.status == "fatal":
                self.fail(item, "transmitter_fatal", result.message)
            elif item.error_code:
                self.fail(item, item.error_code, item.error + runs)
            else:
                code = "line_unreachable" if result.message.startswith(UNREACHABLE) else "transmitter_retry"
                self.fail(item, code, result.message + runs)

    def run(self) -> bool:
        """Runs until every file is settled; True when stopped."""
        while self.pending:
            if self.control.stop.is_set():
                return True
            result = self.run_once()
            if result.status == "stopped":
                if self.control.stop.is_set():
                    return True
                continue  # a new speed: the same attempt again with the new -s
            if result.status == "success":
                self.after_success()
            if not self.pending:
                break
            if result.status == "fatal" or self.attempt >= self.options.attempts:
                self.give_up(result)
                break
            message = result.message if result.status == "retry" else "some files failed verification"
            delay = max(
                backoff_delay(self.attempt, base=self.options.backoff_base, cap=self.options.backoff_cap),
                self.options.backoff_base * _MIN_DELAY_SHARE,
            )
            for item in self.pending.values():
                code = item.error_code or ("line_unreachable" if message.startswith(UNREACHABLE) else "transmitter_retry")
                self.tell(FileRetrying(item.move.item_id, self.attempt, delay, code, item.error or message))
                item.error_code, item.error, item.started, item.reported = "", "", False, 0
            if self.control.stop.wait(delay):
                return True
            self.attempt += 1
        return self.control.stop.is_set() and bool(self.pending)


def _checked(move: Move, direction: Direction) -> tuple[str, str]:
    """(clean destination, clean remote path for a download); raises PathRefused.

    A line break would make one remote path two in the download list; a relative local path would be
    read from the transmitter's working folder, not the user's."""
    key = clean_server_path(move.destination)
    if direction == "upload":
        if not os.path.isabs(move.source):
            raise PathRefused(f"local path {move.source!r} is not absolute")
        return key, ""
    if "\n" in move.source or "\r" in move.source:
        raise PathRefused(f"remote path {move.source!r} contains a line break")
    return key, clean_server_path(move.source)


def _kbps(control: Control) -> int | None:
    rate = control.bucket.rate
    return None if rate is None else max(1, min(SDK_MAX_SPEED, round(rate / 1024)))


def run_transmitter_leg(
    tasks: Iterable[Move],
    *,
    direction: Direction,
    spec: SpecFactory,
    work_dir: Path,
    destination_root: Path | None,
    sizes: dict[int, int],
    report: Report,
    control: Control,
    options: TransferOptions,
    secrets: Mapping[str, str] | None = None,
    handles: Mapping[int, int] | None = None,
) -> RunSummary:
    """Move `tasks` through the transmitter (see the module docstring); events go to `report`.

    Upload: Move.source is the local file, Move.destination its path below the storage root.
    Download: Move.source is the remote path, Move.destination its path below `destination_root`.
    `work_dir` is a private folder in the data dir (made 0700) for manifests (0600) and the logs.
    `secrets` reach the transmitter as environment variables, never in its argv.
    `handles` (upload): item id -> a descriptor the caller opened beneath its checked root, when the
    Move's source names it (`/proc/<pid>/fd/<n>`): the file is then hashed from that descriptor.
    """
    if direction not in ("upload", "download"):
        raise ValueError(f"direction must be 'upload' or 'download', got {direction!r}")
    if direction == "download" and destination_root is None:
        raise ValueError("a download needs its destination_root")
    work_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    work_dir.chmod(DIR_MODE)
    leg = _Leg(direction, spec, work_dir, destination_root, report, control, options, secrets=secrets, handles=handles or {})
    for move in tasks:
        try:
            key, remote = _checked(move, direction)
        except PathRefused as exc:
            leg.failed += 1
            leg.tell(FileFinished(move.item_id, ok=False, error_code="bad_path", error=str(exc)))
            continue
        size = sizes.get(move.item_id)
        if direction == "upload" and size is None:
            try:
                size = os.stat(move.source).st_size
            except OSError:
                size = None  # the transmitter reports it missing
        leg.pending[move.item_id] = _Item(move, key, remote, size)
        leg.by_path.setdefault(move.source if direction == "upload" else remote, []).append(move.item_id)
        if direction == "download":
            leg.by_path.setdefault("/" + remote, []).append(move.item_id)
    if direction == "download" and leg.pending:
        leg.make_staging()
    try:
        stopped = leg.run() if leg.pending else control.stop.is_set()
    finally:
        leg.drop_staging()
    return RunSummary(leg.ok, leg.failed, 0, leg.sent, stopped, control.reason if stopped else "")
