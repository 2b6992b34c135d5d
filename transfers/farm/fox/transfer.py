"""How a Fox account's files move: the vendor's transmitter (transfers.engine.transmitter), on a line
chosen for each run (lines.choose_line), into the storage ids the farm gave the account (FoxFarm.storage).

rvweb around the transmitter:

* Uploads: each local path goes through the account's path map and must lie beneath an allowed root
  (checked right before the manifest is written, as the engine's own runs do); with `is_db`, a file the
  ledger saw at the same size, mtime and path is not sent again (a content hash is kept for each file
  sent, the SDK kept none: §8 #12).
* Downloads: the transmitter writes into a staging folder inside the job's local folder; each file is
  checked (size, hash) and renamed into place (engine.transmitter.leg).
* The line: chosen once per run and kept on the job (its page says which and why). A line that does not
  answer is tried again with backoff, `upload_num` times at most, then the job ends naming it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import resource
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings

from transfers import transmitter_install
from transfers.engine.events import Event, FileFinished, Report
from transfers.engine.ledger import Ledger, LedgerRecord
from transfers.engine.localfs import NotAFile
from transfers.engine.paths import PathRefused, clean_server_path
from transfers.engine.runner import Move, RunSummary, Task, backoff_delay
from transfers.engine.send import source_error
from transfers.engine.transmitter import TransmitSpec, run_transmitter_leg
from transfers.engine.transmitter.command import TransmitType
from transfers.engine.transmitter.leg import SpecFactory
from transfers.farm.base import CheckStep, LegRequest, Route, TransportUnavailable
from transfers.farm.fox import lines
from transfers.farm.fox.errors import FoxError
from transfers.farm.fox.parse import static_lines

if TYPE_CHECKING:
    from transfers.farm.fox.connector import FoxFarm
    from transfers.kinds.options import Transfer

logger = logging.getLogger(__name__)
T = TypeVar("T")

ENGINES = ("aspera", "raysync")  # the transmitter's -E; the SDK's "raysyncproxy" is read as raysync (§8 #13)
DEFAULT_ENGINE = "aspera"  # the SDK's default engine_type
_LEDGER_BATCH = 500


def work_dir(job_id: int) -> Path:
    """The job's private folder for the transmitter's manifests and logs (in the data dir, never /tmp)."""
    return Path(settings.DATA_DIR) / "transmitter" / "runs" / f"job-{job_id}"


def fox_transfer(connector: FoxFarm, request: LegRequest) -> RunSummary:
    pending = _moves(request.tasks)
    first = next(pending, None)
    if first is None:  # an auto download's round with nothing new: no line to choose, no process to start
        return RunSummary(0, 0, 0, 0, stopped=False)
    pending = itertools.chain([first], pending)
    try:
        engine = check_engine(request.job_options)
    except ValueError as exc:  # OptionsInvalid
        raise TransportUnavailable(str(exc)) from None
    exe = transmitter_install.transmitter_path()
    if exe is None:
        raise TransportUnavailable(
            "the vendor's transmitter is not installed on this worker: run `manage.py install_transmitter` "
            "(or point RVWEB_TRANSMITTER at it)"
        )
    try:
        where = _patiently(request, lambda: connector.storage(request.area))
        choice = _route(connector, request, engine, exe) if where is not None else None
    except (FoxError, lines.LineNotFound) as exc:
        raise TransportUnavailable(str(exc)) from None
    if where is None or choice is None:  # stopped while waiting for the farm or a line
        return RunSummary(0, 0, 0, 0, stopped=True, stop_reason=request.control.reason)
    storage_id, user_id = where
    spec = _spec_factory(request, exe, choice, storage_id, user_id)

    def leg(tasks: Iterable[Move], report: Report, handles: dict[int, int] | None = None) -> RunSummary:
        return run_transmitter_leg(
            tasks,
            direction=request.direction,
            spec=spec,
            work_dir=work_dir(request.job_id),
            destination_root=destination_root,
            sizes={item: size for item, size in request.sizes().items() if size is not None},
            report=report,
            control=request.control,
            options=request.engine,
            handles=handles,
        )

    destination_root = None
    if request.direction == "download":
        folder = request.local_folder()
        request.destination_added(folder)
        destination_root = folder.root
        summary = leg(pending, request.report)
    else:
        summary = _upload(_Uploads(request, pending), leg)
    if summary.files_failed:
        connector.chosen.pop(engine, None)  # the next leg (an auto download's next round) chooses its line again
    return summary


def _route(connector: FoxFarm, request: LegRequest, engine: str, exe: Path) -> lines.LineChoice | None:
    """The run's line for the engine: chosen (and shown on the job's page) at its first leg, kept for
    the next ones (an auto download's rounds), not measured again each time."""
    if engine in connector.chosen:
        return connector.chosen[engine]
    choice = _line(connector, request, engine)
    if choice is None:
        return None
    connector.chosen[engine] = choice
    request.note_route(
        Route(
            transport="transmitter",
            line=choice.name,
            host=choice.host,
            port=choice.port,
            engine=choice.engine,
            reason=choice.reason,
            measured={name: None if s is None else round(s * 1000, 1) for name, s in choice.measured.items()},
            version=_version(exe),
        )
    )
    return choice


def _spec_factory(request: LegRequest, exe: Path, choice: lines.LineChoice, storage_id: str, user_id: int) -> SpecFactory:
    options = request.job_options
    passed = tuple((name, os.environ[name]) for name in settings.TRANSMITTER_PASS_ENV if name in os.environ)

    def spec(transmit_type: TransmitType, local: str, remote: str, max_speed: int | None) -> TransmitSpec:
        return TransmitSpec(
            exe=str(exe),
            engine="raysync" if choice.engine == "raysync" else "aspera",  # checked against ENGINES above
            host=choice.host,
            port=choice.port,
            storage_id=str(storage_id),
            user_id=str(user_id),
            transmit_type=transmit_type,
            local=local,
            remote=remote,
            max_speed=max_speed,
            network_mode=options.network_mode,
            extra_env=passed,
            silence=float(settings.TRANSMITTER_SILENCE),
        )

    try:  # the farm's values for the line and ids, checked once before any run (TransmitSpec refuses a bad one)
        spec("upload_json" if request.direction == "upload" else "download_list", "/", "/", None)
    except ValueError as exc:
        raise TransportUnavailable(f"line {choice.name!r} cannot be used: {exc}") from None
    return spec


def _upload(uploads: _Uploads, leg: Callable[[Iterable[Move], Report, dict[int, int] | None], RunSummary]) -> RunSummary:
    """The upload's batches, one transmitter run each, with the files decided before it (skipped, refused)."""
    summaries: list[RunSummary] = []
    try:
        for batch in uploads.batches():
            summaries.append(leg(batch, uploads.report, uploads.handles))
            uploads.close()
            if summaries[-1].stopped:
                break
    finally:
        uploads.close()
        uploads.flush()
    return RunSummary(
        sum(s.files_ok for s in summaries) + uploads.skipped,
        sum(s.files_failed for s in summaries) + uploads.refused,
        sum(s.files_skipped for s in summaries) + uploads.skipped,
        sum(s.bytes_sent for s in summaries),
        any(s.stopped for s in summaries),
        next((s.stop_reason for s in summaries if s.stopped), ""),
        sum(s.files_not_sent for s in summaries),
        sum(s.bytes_not_sent for s in summaries),
    )


def _batch_size() -> int:
    """Files per transmitter run (RVWEB_TRANSMITTER_BATCH): each is held open while it runs, so never
    more than a quarter of the descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = int(settings.TRANSMITTER_BATCH)
    return max(1, min(wanted, soft // 4)) if soft > 0 else wanted


def _moves(tasks: Iterable[Task]) -> Iterator[Move]:
    for task in tasks:
        yield task if isinstance(task, Move) else Move(item_id=task.item_id, source=task.source, destination=task.destination)


def check_engine(options: Transfer) -> str:
    """The transmitter engine the options name; OptionsInvalid for one it does not have."""
    from transfers.kinds.options import OptionsInvalid  # the kinds import the farms: not at module level

    engine = lines.engine_of(options.engine_type or DEFAULT_ENGINE)
    if engine not in ENGINES:
        raise OptionsInvalid(
            f"engine_type {options.engine_type!r}: the transmitter's engines are aspera and raysync (raysyncproxy is raysync)"
        )
    return engine


def check_transmitter() -> CheckStep:
    """The "test connection" step of the transmitter this worker would run: where, which version."""
    exe = transmitter_install.transmitter_path()
    if exe is None:
        return CheckStep(
            "transmitter", False, "not installed on this machine: run `manage.py install_transmitter` (or set RVWEB_TRANSMITTER)"
        )
    found = transmitter_install.installed()
    version = _version(exe) or "(its version did not print: is it the transmitter?)"
    package = f", from {transmitter_install.PACKAGE}=={found.version}" if found is not None and found.path == exe else ""
    return CheckStep("transmitter", True, f"rayvision_transmitter {version} at {exe}{package}")


def _version(exe: Path) -> str:
    try:
        return transmitter_install.transmitter_version(exe)
    except transmitter_install.InstallError as exc:
        logger.warning("the transmitter's version: %s", exc)
        return ""


def _line(connector: FoxFarm, request: LegRequest, engine: str) -> lines.LineChoice | None:
    """The run's line, asked patiently (_patiently): the farm's lines, measured, one chosen."""
    options = request.job_options
    return _patiently(
        request,
        lambda: lines.choose_line(
            connector.lines() if options.automatic_line else [],
            engine=engine,
            automatic_line=options.automatic_line,
            internet_provider=options.internet_provider,
            server_ip=options.server_ip,
            server_port=options.server_port,
            static_lines=static_lines(connector.account),
        ),
    )


def _patiently(request: LegRequest, ask: Callable[[], T]) -> T | None:
    """`ask()`, tried again with backoff while the farm or its line is away (an unreachable line, a farm
    API that does not answer), `upload_num` times in all; then the job ends saying why. None: stopped."""
    attempts = request.engine.attempts
    for attempt in range(1, attempts + 1):
        try:
            return ask()
        except (lines.LineUnreachable, FoxError) as exc:
            if isinstance(exc, FoxError) and not exc.retryable:
                raise
            if attempt == attempts:
                raise TransportUnavailable(f"{exc} (tried {attempts} times)") from None
            delay = max(1.0, backoff_delay(attempt, base=request.engine.backoff_base * 4, cap=request.engine.backoff_cap))
            logger.warning("job %s: %s; will retry in %.1fs", request.job_id, exc, delay)
            if request.control.stop.wait(delay):
                return None
    return None


class _Uploads:
    """An upload leg's files before the transmitter sees them, `batch_size` at a time: each local path
    mapped and checked beneath the allowed roots, the unchanged ones (the ledger, `is_db`) finished as
    skipped, and each other one OPENED beneath its root (no symlink followed). The transmitter is given
    `/proc/<pid>/fd/<n>` of that descriptor, not the path: a file swapped for a symlink after the check
    is not what it reads. After: each file sent is recorded in the ledger with its content hash."""

    def __init__(self, request: LegRequest, pending: Iterable[Move]) -> None:
        self.request = request
        self.pending_moves = pending
        self.source = request.local_files()
        self.ledger: Ledger | None = request.ledger()
        self.skipped = 0
        self.refused = 0
        self.names: dict[int, tuple[str, str]] = {}  # item -> (server key, the manifest's local path)
        self.pending: list[LedgerRecord] = []
        self.handles: dict[int, int] = {}  # item -> descriptor, for the batch being sent
        self._open: list[Any] = []
        self.batch_size = _batch_size()

    def batches(self) -> Iterator[list[Move]]:
        batch: list[Move] = []
        for move in self.pending_moves:
            batch.append(move)
            if len(batch) >= self.batch_size:
                if opened := self._checked(batch):
                    yield opened
                batch = []
        if opened := self._checked(batch):
            yield opened

    def close(self) -> None:
        for handle in self._open:
            handle.close()
        self._open, self.handles = [], {}

    def _refuse(self, move: Move, code: str, error: str) -> None:
        self.refused += 1
        self.request.report(FileFinished(move.item_id, ok=False, error_code=code, error=error))

    def _checked(self, batch: list[Move]) -> list[Move]:
        keys: dict[int, str] = {}
        for move in batch:
            with contextlib.suppress(PathRefused):  # the leg refuses it, saying why
                keys[move.item_id] = clean_server_path(move.destination)
        records = self.ledger.lookup(sorted(set(keys.values()))) if self.ledger and keys else {}
        opened: list[Move] = []
        for move in batch:
            try:
                located, info = self.source.locate(move.source)
            except PathRefused as exc:
                self._refuse(move, "bad_path", str(exc))
                continue
            key = keys.get(move.item_id, "")
            record = records.get(key)
            if (
                record is not None
                and info is not None
                and record.size == info.st_size
                and (record.mtime_ns == info.st_mtime_ns and record.local == move.source)
            ):
                self.skipped += 1
                self.request.report(
                    FileFinished(move.item_id, ok=True, size=info.st_size, checksum=record.checksum, skipped=True)
                )
                continue
            try:
                handle = self.source.open_source(located)
            except PathRefused as exc:
                self._refuse(move, "bad_path", str(exc))
                continue
            except NotAFile:
                self._refuse(move, "not_a_file", f"local path is not a regular file: {move.source}")
                continue
            except OSError as exc:
                failure = source_error(exc, move.source)
                self._refuse(move, failure.code, str(failure))
                continue
            self._open.append(handle)
            self.handles[move.item_id] = handle.fileno()
            self.names[move.item_id] = (key, move.source)
            held = f"/proc/{os.getpid()}/fd/{handle.fileno()}"  # what was opened, whatever the path is now
            opened.append(Move(item_id=move.item_id, source=held, destination=move.destination))
        return opened

    def report(self, event: Event) -> bool | None:
        if isinstance(event, FileFinished) and event.ok and not event.skipped and self.ledger is not None:
            key, local = self.names.get(event.item_id, ("", ""))
            if key:
                self.pending.append(LedgerRecord(key, local, event.size, event.mtime_ns, event.checksum))
                if len(self.pending) >= _LEDGER_BATCH:
                    self.flush()
        return self.request.report(event)

    def flush(self) -> None:
        if self.ledger is not None and self.pending:
            self.ledger.record(self.pending)
        self.pending = []
