"""What every farm connector gives, whatever the farm: storage areas, tasks, their outputs, transfer lines.

A connector is made from a FarmAccount (transfers.farm.connector_for picks the class by the account's
kind). Its answers are plain dataclasses, so pages, services and downloads read every farm alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from transfers.engine.endpoints import Destination, Endpoint, LocalFolder, Source, StoredFile, open_endpoint
from transfers.engine.events import Report
from transfers.engine.ledger import Ledger
from transfers.engine.runner import Control, RunSummary, Task, TransferOptions, run_transfer
from transfers.farm.status import TaskStatus, status_of

if TYPE_CHECKING:
    from transfers.kinds.options import Transfer
    from transfers.models import FarmAccount

AREAS = ("input", "output", "config")  # assets, rendered frames, task configuration files


class FarmError(Exception):
    """A remote farm could not answer: unreachable, refused the account's credentials, answered nonsense.
    Each remote connector's errors derive from it, so a page or a run catches one type for every farm;
    the message says so for people and never carries a secret. `retryable`: asking again later may
    work (the farm was away or overloaded), unlike a refused key or a bad request."""

    retryable: bool = False


class UnsupportedAccount(ValueError):
    """The account's farm has no connector in this version: nothing would reach it."""


class TransportUnavailable(RuntimeError):
    """The farm's transport cannot move this leg now (no line answers, the vendor's tool is missing):
    the message says why, for people; the job ends with it instead of an internal error."""


@dataclass(frozen=True)
class StorageSetting:
    """One setting a storage farm reads from the account's `storage` (never a secret: those are the key)."""

    name: str
    label: str
    help: str = ""
    required: bool = False
    integer: bool = False
    default: Any = None
    maximum: int = 65535  # for an integer
    minimum: int = 1
    learned: bool = False  # rvweb may write it itself (a host key pinned on first use): a stale page keeps it


class StorageInvalid(ValueError):
    """A storage setting that is wrong: (setting, message)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


class UnknownTask(LookupError):
    """The farm has no task with this id on this account (never an endless wait, §8 #8)."""

    def __init__(self, task_id: int, account: str) -> None:
        super().__init__(f"farm account {account!r} has no task {task_id}")
        self.task_id = task_id


@dataclass(frozen=True)
class FarmTaskInfo:
    """A task as the farm reports it; `children` are the ids of its child tasks (empty for a leaf)."""

    task_id: int
    scene: str
    status_code: int | None
    output_folder: str  # relative to the output area (the SDK's outputFileName)
    frames_expected: int = 0
    parent_id: int | None = None
    layer: str = ""
    children: tuple[int, ...] = ()
    frames_done: int = 0  # frames the farm reports finished (of this task itself; a parent's are its children's)
    updated_at: datetime | None = None

    @property
    def status(self) -> TaskStatus:
        return status_of(self.status_code)

    @property
    def is_parent(self) -> bool:
        return bool(self.children)


@dataclass(frozen=True)
class FarmOutput:
    """One output file of a task: its path relative to the output area, its size, and whether the farm
    says it is complete (a file not announced yet may still be being written)."""

    path: str
    size: int
    finished: bool
    expected: int | None = None  # the size the farm announced, when it announced one

    @property
    def short(self) -> bool:
        """Announced at one size, another now: never complete as it is."""
        return self.expected is not None and self.size != self.expected


@dataclass(frozen=True)
class TransferLine:
    """A way to reach the farm's storage (the SDK's transfer line: name, server, port, engine)."""

    name: str
    engine: str
    server: str
    port: int
    is_default: bool = False
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckStep:
    """One step of a connector's "test connection": what was checked, whether it passed, and what was seen."""

    name: str
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class Route:
    """How a run reaches the farm's storage, for the job's page: the transport, the line and why."""

    transport: str  # "local" (a folder on this machine), "transmitter" (the vendor's), ...
    line: str = ""  # the line's name
    host: str = ""
    port: int = 0
    engine: str = ""
    reason: str = ""  # for people: why this line ("fastest measured: 3 ms", "internet_provider HKCT", ...)
    measured: dict[str, float | None] = field(default_factory=dict)  # line name -> connect time (ms), None: unreachable
    version: str = ""  # the transport's own version (the transmitter's), when it has one

    def as_json(self) -> dict[str, Any]:
        return {
            "transport": self.transport,
            "line": self.line,
            "host": self.host,
            "port": self.port,
            "engine": self.engine,
            "reason": self.reason,
            "measured": dict(self.measured),
            "version": self.version,
        }


@dataclass
class LegRequest:
    """One leg of a run for the farm's connector to move (built by run_context.JobRun.transfer): the
    job's pending items of one storage area in one direction, and what the run lends to move them."""

    job_id: int
    area: str
    direction: Literal["upload", "download"]
    tasks: Iterable[Task]
    job_options: Transfer  # the kind's options (engine_type, server_ip, automatic_line, max_speed...)
    engine: TransferOptions
    report: Report
    control: Control
    local_files: Callable[[], Source]  # an upload's source: the user's local files (allowed roots, path map)
    local_folder: Callable[[], LocalFolder]  # a download's destination: the job's local folder
    ledger: Callable[[], Ledger | None]  # the leg's skip ledger (is_db; a download's identical local files), or None
    destination_added: Callable[[Destination], None]  # the recorder verifies free space through it
    note_route: Callable[[Route], None]  # shown on the job's page
    sizes: Callable[[], dict[int, int | None]] = dict  # the items' known sizes (item id -> bytes)


class FarmConnector:
    """The interface; one subclass per farm kind, registered in transfers.farm.CONNECTORS."""

    kind: ClassVar[str]
    takes_events: ClassVar[bool] = False  # whether its tasks are moved by farm events (transfers.farm_events)
    storage_settings: ClassVar[tuple[StorageSetting, ...]] = ()  # what it reads from the account's `storage`
    transport: ClassVar[str] = "local"  # what moves its files; a worker announces the transports it can run

    def __init__(self, account: FarmAccount) -> None:
        self.account = account

    # --- settings -----------------------------------------------------------------------------------

    @classmethod
    def storage_checked(cls, raw: Any) -> dict[str, Any]:
        """The account's storage settings for this kind, checked (StorageInvalid names the first wrong one);
        a setting it does not take is refused, a missing optional one takes its default."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise StorageInvalid("storage", 'an object of settings, e.g. {"host": "nas", "port": 22}')
        known = {setting.name for setting in cls.storage_settings}
        unknown = sorted(set(raw) - known)
        if unknown:
            takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
            raise StorageInvalid(unknown[0], f"not a storage setting of a {cls.kind} account ({takes})")
        checked: dict[str, Any] = {}
        for setting in cls.storage_settings:
            value = raw.get(setting.name)
            if value in (None, ""):
                if setting.required:
                    raise StorageInvalid(setting.name, f"give the {setting.label}")
                if setting.default is not None:
                    checked[setting.name] = setting.default
                continue
            if setting.integer:
                digits = str(value).strip()
                if isinstance(value, bool) or not isinstance(value, int | str) or not (digits.isascii() and digits.isdigit()):
                    raise StorageInvalid(setting.name, "a whole number")  # "²" is a digit to isdigit(), not to int()
                value = int(digits)
                if not setting.minimum <= value <= setting.maximum:
                    raise StorageInvalid(setting.name, f"from {setting.minimum} to {setting.maximum}")
            else:
                if not isinstance(value, str):
                    raise StorageInvalid(setting.name, "a text")
                value = value.strip()
                if len(value) > 4096 or "\x00" in value:
                    raise StorageInvalid(setting.name, "at most 4096 characters, no NUL")
            checked[setting.name] = value
        return cls.storage_more_checks(checked)

    @classmethod
    def storage_more_checks(cls, checked: dict[str, Any]) -> dict[str, Any]:
        """A kind's own checks of its settings (a host name, an absolute path, a URL)."""
        return checked

    def check_options(self, options: Transfer) -> None:
        """Refuse (OptionsInvalid, naming the option) what this farm cannot run, before a job is recorded."""

    def close(self) -> None:
        """Release what the connector opened (a remote storage's connections); it opens them again when used."""

    def ensure(self) -> FarmConnector:
        """Make sure the account's storage areas exist (a no-op where the farm owns them)."""
        return self

    def for_page(self) -> FarmConnector:
        """This connector as a page or an API request uses it: a remote farm answers within a few
        seconds or not at all (a worker's patient retries would hold the request for minutes)."""
        return self

    def area_root(self, name: str) -> Path:
        """Where a storage area lives, as a local path (until the engine's endpoints wrap it)."""
        raise NotImplementedError

    def endpoint(self, name: str) -> Endpoint:
        """A storage area as an engine endpoint (what a run reads from or writes into). This default
        serves farms whose areas are local folders; a remote farm returns its transport's endpoint."""
        label = f'{check_area(name)} storage of farm account "{self.account.name}"'
        return open_endpoint("local", root=self.ensure().area_root(name), label=label, where="the farm storage")

    def files_here(self, name: str) -> Endpoint | None:
        """The area as an endpoint rvweb itself reads and writes (its partial files to discard, a frame's
        bytes to compare with a local file), or None for a farm whose own transport moves the files."""
        return self.endpoint(name)

    def transfer(self, request: LegRequest) -> RunSummary:
        """Move one leg's files. This default serves farms whose areas are endpoints: rvweb's own
        engine reads and writes them (verified, resumable); a farm reached through a vendor's
        transport overrides it."""
        source: Source
        destination: Destination
        if request.direction == "download":
            source, destination = self.endpoint(request.area), request.local_folder()
        else:
            source, destination = request.local_files(), self.endpoint(request.area)
        request.destination_added(destination)
        return run_transfer(
            source,
            destination,
            request.tasks,
            report=request.report,
            options=request.engine,
            control=request.control,
            ledger=request.ledger(),
        )

    def list_output(self, prefix: str) -> list[StoredFile]:
        """The files below `prefix` in the output area (relative to it)."""
        return list(self.endpoint("output").list(prefix))

    def areas(self) -> dict[str, Path]:
        return {name: self.area_root(name) for name in AREAS}

    def tasks(self) -> list[FarmTaskInfo]:
        """Every task of the account, parents and children, newest first."""
        raise NotImplementedError

    def task(self, task_id: int) -> FarmTaskInfo:
        """One task; UnknownTask when the farm has none with this id."""
        raise NotImplementedError

    def unknown(self, task_ids: list[int]) -> list[int]:
        """The ids among `task_ids` the farm has no task for (a connector that can ask in one call overrides this)."""
        missing = []
        for task_id in task_ids:
            try:
                self.task(task_id)
            except UnknownTask:
                missing.append(task_id)
        return missing

    def leaves(self, task_id: int) -> list[FarmTaskInfo]:
        """The leaf tasks under a task (itself when it has no children): the ones whose status counts."""
        task = self.task(task_id)
        if not task.children:
            return [task]
        return [leaf for child in task.children for leaf in self.leaves(child)]

    def outputs(self, task_id: int) -> list[FarmOutput]:
        """The output files of a task (of its leaves, for a parent), sorted by path."""
        raise NotImplementedError

    def lines(self) -> list[TransferLine]:
        """The transfer lines to the account's storage, the default first."""
        raise NotImplementedError

    def check(self) -> list[CheckStep]:
        """The connector's own "test connection": each step it tried, in order, with what failed and why.
        Never raises for a failing farm (a failed step says it); never carries the account's key."""
        return [CheckStep("connector", False, f"the {self.kind} connector has no connection check yet")]

    def announced_since(self, task_ids: list[int], since: float) -> bool:
        """Whether the farm announced an output of these tasks (or their children) after `since` (a
        UNIX time): a watcher waiting for its next poll looks at once. Farms without events: never."""
        return False


def check_area(name: str) -> str:
    if name not in AREAS:
        raise ValueError(f"unknown storage area {name!r}; expected one of {', '.join(AREAS)}")
    return name
