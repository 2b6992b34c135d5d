"""What a job kind is: its options, the legs it moves files in, and how its items are made.

Plain classes, no Django imports at module level: the models and services import the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

from transfers.kinds import options as opts

if TYPE_CHECKING:
    from transfers.engine.endpoints import StoredFile
    from transfers.engine.runner import RunSummary
    from transfers.models import FarmAccount, Manifest, TransferJob

OptionsT = TypeVar("OptionsT", bound=opts.Transfer)
KeepGoing = Callable[[], bool]


@dataclass(frozen=True)
class Leg:
    """One pass of the engine over the job's items in one farm storage area, in one direction."""

    area: str  # input, output or config: the farm storage area the items' server paths are in
    direction: Literal["upload", "download"] = "upload"
    ledger: bool = False  # skip files the ledger says are unchanged since they were last sent (is_db)


@dataclass(frozen=True)
class NewItem:
    """A file a running job found to move (a download's output): its source and destination names."""

    server: str  # in the farm's storage area
    local: str  # below the job's local folder (a download) or the local path (an upload)
    size: int | None = None


class RunContext(Protocol):
    """What the worker gives a kind while its job runs (transfers.execution)."""

    job: TransferJob

    @property
    def taken(self) -> set[str]:
        """The server paths the job already has items for."""
        ...

    def transfer(self, leg: Leg) -> RunSummary:
        """Run the engine over the job's pending items of the leg's area; returns when they are done or stopped."""
        ...

    def add_items(self, items: list[NewItem], *, conflict: str = "overwrite") -> int:
        """Store new pending items (a local file already at an item's name is handled by `conflict`) and
        grow the job's totals; returns how many were added."""
        ...

    def list_output(self, prefix: str) -> list[StoredFile]:
        """The files below `prefix` in the farm's output area."""
        ...

    def wait(self, seconds: float, *, wake: Callable[[], bool] | None = None) -> bool:
        """Sleep (looking at `wake` twice a second when given, and at a stop); False when the run must stop."""
        ...

    def note_watch(self, watches: list[Any], *, next_poll: float, error: str = "") -> None:
        """Tell the page what the watcher knows of each task, when it looks again, and its last problem."""
        ...


@dataclass(frozen=True)
class Totals:
    """What a new job is known to hold before its worker has listed it (the page's first figures)."""

    files: int = 0
    bytes: int = 0


class JobKind(Generic[OptionsT]):
    """A job kind: one module with a subclass of this, plus its registration in transfers.kinds."""

    name: ClassVar[str]
    label: ClassVar[str]
    Options: type[OptionsT]
    uses_manifest: ClassVar[bool] = False  # the job sends a manifest's entries (it must be ready)
    direction: ClassVar[Literal["upload", "download"]] = "upload"  # which way its files go (the dashboard's columns)

    def plan(self, *, account: FarmAccount, manifest: Manifest | None, options: OptionsT, roots: list[Path]) -> Totals:
        """Check what the job names before it is recorded (OptionsInvalid names the problem) and say
        what it is known to hold. Quick: the request waits on it; listing is the worker's."""
        raise NotImplementedError

    def parse(self, raw: dict[str, object] | None) -> OptionsT:
        """Options from a form, the API or a command, checked once; OptionsInvalid names the option."""
        return opts.parse(self.Options, raw)

    def options(self, job: TransferJob) -> OptionsT:
        """A stored job's options, typed, with every default."""
        return opts.load(self.Options, job.options)

    def legs(self, options: OptionsT) -> list[Leg]:
        raise NotImplementedError

    def describe(self, options: OptionsT, *, account: str) -> str:
        """What the job moves, from where to where, for its page."""
        raise NotImplementedError

    def prepare(self, job: TransferJob, options: OptionsT, keep_going: KeepGoing) -> bool:
        """Make the job's items (in the worker, in short batches); False when keep_going() said stop."""
        raise NotImplementedError

    def drive(self, ctx: RunContext, options: OptionsT) -> list[RunSummary]:
        """The run, in the engine's thread: by default each leg once, in order, until one stops."""
        summaries: list[RunSummary] = []
        for leg in self.legs(options):
            summaries.append(ctx.transfer(leg))
            if summaries[-1].stopped:
                break  # a pause, a cancel or a full disk: the next legs wait for the resume
        return summaries
