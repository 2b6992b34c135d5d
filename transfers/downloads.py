"""Downloads: which outputs of a farm's render tasks are complete, where each goes locally, and what to
do with a local file already there. The worker's side of the download kinds (transfers.kinds.download).

Unlike the SDK (reference/sdk-spec.md §4, §8 #8, #10, #11):

* Each output becomes one item, once: never re-listed and re-sent every round.
* An output is taken only when complete: the farm announced it finished, or its size was the same, and
  not zero, in two listings in a row. A frame still being written waits for the next listing.
* Every status code is answered (transfers.farm.status); a task id the farm does not know is a clear
  error at once, never an endless wait; a tree without leaves likewise.
* A local file already at an output's name is handled by the job's `conflict` policy.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from transfers.engine import hashing
from transfers.engine.endpoints import Endpoint
from transfers.engine.endpoints.base import checksum_of
from transfers.engine.ledger import LedgerRecord
from transfers.engine.paths import PathRefused, clean_server_path
from transfers.farm import FarmConnector, FarmError, FarmOutput, FarmTaskInfo, UnknownTask
from transfers.farm.status import NoLeafTasks, tree_ended
from transfers.kinds.options import Download, OptionsInvalid

logger = logging.getLogger(__name__)

DEFAULT_FOLDER = "renderfarm_sdk"  # the SDK's ~/renderfarm_sdk


class DownloadRefused(ValueError):
    """A download that cannot go on (a task the farm does not know, a tree without leaves); the message
    says which and why."""


def local_root(options: Download, allowed_roots: Sequence[Path], *, create: bool = False) -> Path:
    """The local folder a download writes into: `local_path`, or the SDK's ~/renderfarm_sdk (under the
    home folder when that is in an allowed root, else under the first allowed root). It must lie under
    an allowed root once every symlink of what exists is followed; OptionsInvalid says why not."""
    roots = [Path(root).resolve() for root in allowed_roots]
    if not roots:
        raise OptionsInvalid("local_path: this rvweb has no allowed local roots (RVWEB_ALLOWED_ROOTS)")
    if options.local_path:
        wanted = Path(os.path.expanduser(options.local_path))
        if not wanted.is_absolute():
            raise OptionsInvalid(f"local_path: {options.local_path!r} is not absolute")
    else:
        home = Path.home() / DEFAULT_FOLDER
        wanted = home if any(_under(home.resolve(), root) for root in roots) else roots[0] / DEFAULT_FOLDER
    real = wanted.resolve()  # follows what exists; a missing tail stays as written
    if not any(_under(real, root) for root in roots):
        shown = ", ".join(str(root) for root in roots)
        raise OptionsInvalid(f"local_path: {str(wanted)!r} is not under an allowed local root ({shown})")
    farm = Path(settings.FARM_ROOT).resolve()
    if _under(real, farm):  # an allowed root that holds the farm's folders: every team's storage areas are there
        raise OptionsInvalid(f"local_path: {str(wanted)!r} is inside the farm storage ({farm}); choose a folder of your own")
    if create:
        try:
            real.mkdir(parents=True, exist_ok=True, mode=0o755)
        except OSError as exc:
            raise OptionsInvalid(f"local_path: cannot create {str(real)!r} ({exc.strerror})") from None
    return real


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_server_paths(options: Download) -> list[str]:
    """The `server_path` filters as clean output-area paths; OptionsInvalid for one that escapes."""
    cleaned = []
    for number, path in enumerate(options.server_paths):
        try:
            cleaned.append(clean_server_path(path))
        except PathRefused as exc:
            raise OptionsInvalid(f"server_path[{number}]: {exc}") from None
    return cleaned


def check_tasks(connector: FarmConnector, task_ids: Iterable[int]) -> None:
    """Every task id known to the farm (the SDK loops forever on one it does not know). A farm that
    cannot say is a refusal saying why, as an unknown id is: a request never ends in a 500 for it."""
    try:
        missing = connector.unknown(list(task_ids))
    except FarmError as exc:
        raise OptionsInvalid(f"task_id_list: the farm could not be asked about these tasks: {exc}") from None
    if missing:
        raise OptionsInvalid(f"task_id_list: {UnknownTask(missing[0], connector.account.name)}")


@dataclass
class TaskWatch:
    """What a watcher knows of one task between listings (kept in memory; a restart relists)."""

    task_id: int
    ended: bool = False
    failed: bool = False  # it ended, and a leaf failed (for notifications)
    status: str = ""
    frames_expected: int = 0
    outputs_seen: int = 0
    sizes: dict[str, int] = field(default_factory=dict)  # unannounced outputs still settling -> size at the last listing
    settled: dict[str, int] = field(default_factory=dict)  # unannounced outputs found complete -> their size then
    final_listing_done: bool = False  # one full listing after the task ended (late frames are not missed)


@dataclass(frozen=True)
class TaskState:
    """A task as a watcher reads it once per listing: whether its tree has ended, a status line, the task
    and its leaves (so one round asks the farm once per task, not once per question)."""

    done: bool
    status: str
    task: FarmTaskInfo
    leaves: list[FarmTaskInfo]


def ended(connector: FarmConnector, task_id: int, *, is_test_stop: bool) -> TaskState:
    """The task's state (see TaskState); DownloadRefused for a task the farm does not know or a tree
    without leaves."""
    try:
        task = connector.task(task_id)
        leaves = connector.leaves(task_id)
        done = tree_ended([leaf.status_code for leaf in leaves], is_test_stop=is_test_stop)
    except UnknownTask as exc:
        raise DownloadRefused(str(exc)) from None
    except NoLeafTasks as exc:
        raise DownloadRefused(f"task {task_id}: {exc}") from None
    labels = sorted({leaf.status.label for leaf in leaves})
    return TaskState(done, task.status.label if not task.children else ", ".join(labels), task, leaves)


def complete_outputs(watch: TaskWatch, outputs: list[FarmOutput], *, ended: bool) -> list[FarmOutput]:
    """The outputs complete now: announced finished, or unannounced with the same non-zero size as at
    the previous listing (an empty one too once the task `ended`). Remembers this listing's sizes for the
    next. DownloadRefused for an ended task's frame that stays short of the size announced for it."""
    complete, sizes, settled = [], {}, {}
    for output in outputs:
        if output.finished:
            complete.append(output)
            continue
        # Once settled, an output stays complete while its size holds: else every other listing would see
        # it as new, and a watcher whose frames settled at different listings would never see none settling.
        before = watch.sizes.get(output.path, watch.settled.get(output.path))
        if before is not None and before == output.size:
            if output.short and ended:  # it will not grow back: never an endless wait, never a short frame done
                raise DownloadRefused(
                    f"task {watch.task_id}: {output.path} was announced finished at {output.expected} bytes and now "
                    f"holds {output.size}"
                )
            if not output.short and (output.size > 0 or ended):  # an empty file is complete once its task ended
                complete.append(output)
                settled[output.path] = output.size
                continue
        sizes[output.path] = output.size
    watch.sizes, watch.settled = sizes, settled
    watch.outputs_seen = len(outputs)
    return complete


def local_name(server: str, output_folder: str, options: Download) -> str:
    """Where an output goes below the local root: `<task_id>_<scene>/...` as on the farm when
    download_filename_format is "true"; without the task's folder when "false"."""
    if options.download_filename_format == "true" or not output_folder:
        return server
    prefix = output_folder.strip("/") + "/"
    return server[len(prefix) :] if server.startswith(prefix) else server


_NUMBERED = re.compile(r"^(?P<stem>.*?)(?: \((?P<n>\d+)\))?(?P<ext>\.[^./]*)?$")


def free_name(
    destination: Endpoint,
    path: str,
    *,
    also_taken: set[str] = frozenset(),  # type: ignore[assignment]
    on_disk: bool = True,
) -> str:
    """`a (2).exr`, `a (3).exr`...: the first name beside `path` that neither the folder (unless on_disk is
    False) nor `also_taken` holds (keep_both; two outputs of one job with one local name)."""
    folder, _, name = path.rpartition("/")
    match = _NUMBERED.match(name)
    stem, ext = (match.group("stem"), match.group("ext") or "") if match else (name, "")
    try:
        taken = destination.names(folder) if on_disk else set()
    except (OSError, PathRefused):
        taken = set()
    taken |= {other.rpartition("/")[2] for other in also_taken if other.rpartition("/")[0] == folder}
    number = 2
    candidate = f"{stem} ({number}){ext}"
    while candidate in taken:
        candidate = f"{stem} ({number}){ext}"
        number += 1
    return f"{folder}/{candidate}" if folder else candidate


def identical(source: Endpoint, source_path: str, destination: Endpoint, destination_path: str) -> str | None:
    """The checksum when the local file at destination_path holds exactly the source's bytes, else None."""
    try:
        there = destination.stat(destination_path)
        _located, info = source.locate(source_path)
        if there is None or info is None or there.size != info.st_size:
            return None
        theirs = _checksum(destination, destination_path)
        ours = _checksum(source, source_path, like=theirs)
    except (OSError, PathRefused):
        return None
    return theirs if theirs == ours else None


def _checksum(endpoint: Endpoint, path: str, like: str | None = None) -> str:
    located, _ = endpoint.locate(path)
    handle = endpoint.open_source(located)
    try:
        return checksum_of(handle, handle.info.st_size, like=like or hashing.plain(""))
    finally:
        handle.close()


class LocalFilesLedger:
    """The ledger of a download whose conflict policy skips identical files: a local file already at a
    frame's name stands for a frame sent before, if its bytes are the frame's (the runner re-hashes the
    source to compare). So a worker restarted after it wrote a file, but before it stored that,
    downloads nothing again."""

    def __init__(self, destination: Endpoint) -> None:
        self.destination = destination

    def lookup(self, servers: Sequence[str]) -> dict[str, LedgerRecord]:
        found = {}
        for path in servers:
            try:
                there = self.destination.stat(path)
                if there is None:
                    continue
                checksum = _checksum(self.destination, path)
            except (OSError, PathRefused):
                continue
            # mtime -1 and no local name: the runner always re-hashes the source before it skips.
            found[path] = LedgerRecord(server=path, local="", size=there.size, mtime_ns=-1, checksum=checksum)
        return found

    def record(self, records: Sequence[LedgerRecord]) -> None:
        """Nothing to keep: the local files are the record."""
