"""download, auto_download and auto_download_after_task_completed: render outputs from the farm's output
area into a local folder (reference/sdk-spec.md §4), each output once, each as soon as it is complete.

* download: what is complete now (two listings a moment apart), once.
* auto_download: every `sleep_time` seconds (and at once when the farm announces a frame, for farms
  that send events), each newly complete output; ends after the listing that follows every task's end.
* auto_download_after_task_completed: a task's outputs once that task has ended, task by task.

What is complete, where it goes and what an existing local file means: transfers.downloads.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from transfers import downloads
from transfers.farm import FarmError, connector_for
from transfers.kinds import register
from transfers.kinds.base import JobKind, KeepGoing, Leg, NewItem, RunContext, Totals
from transfers.kinds.options import AutoDownload, AutoDownloadAfterTaskCompleted, Download, OptionsInvalid

if TYPE_CHECKING:
    from transfers.engine.runner import RunSummary
    from transfers.models import FarmAccount, Manifest, TransferJob

logger = logging.getLogger(__name__)

_STABLE_GAP = 1.0  # seconds between the two listings of a one-shot download (a frame being written grows)


class _Downloads(JobKind[Download]):
    """What the three download kinds share: checks, the leg, and turning outputs into items."""

    direction = "download"

    def plan(self, *, account: FarmAccount, manifest: Manifest | None, options: Download, roots: list[Path]) -> Totals:
        downloads.local_root(options, roots)
        downloads.check_server_paths(options)
        if not options.server_paths:
            downloads.check_tasks(connector_for(account).for_page(), options.task_id_list)  # in a request: seconds
        return Totals()

    def describe(self, options: Download, *, account: str) -> str:
        ids = options.task_id_list
        if ids:
            what = f"the outputs of task{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"
        else:
            what = "the files of " + ", ".join(options.server_paths)
        try:
            where = str(downloads.local_root(options, [Path(root) for root in settings.ALLOWED_LOCAL_ROOTS]))
        except OptionsInvalid:
            where = options.local_path or downloads.DEFAULT_FOLDER
        return f'{what}, from the output storage of farm account "{account}" into {where}'

    def legs(self, options: Download) -> list[Leg]:
        return [Leg("output", direction="download", ledger=options.conflict != "overwrite")]

    def prepare(self, job: TransferJob, options: Download, keep_going: KeepGoing) -> bool:
        from transfers.services import job_prepare

        return job_prepare(job_id=job.pk, keep_going=keep_going)  # outputs are listed as the run goes

    def take(self, ctx: RunContext, options: Download, outputs: list[tuple[str, int, str]]) -> int:
        """Items for (server path, size, task's output folder) not taken before; returns how many."""
        items = []
        under = [path.rstrip("/") + "/" for path in downloads.check_server_paths(options)]
        for server, size, folder in outputs:
            if server in ctx.taken:
                continue
            if under and options.task_id_list and not any(server.startswith(prefix) for prefix in under):
                continue  # a watcher given server_path takes only what lies below it
            local = downloads.local_name(server, folder, options)
            items.append(NewItem(server=server, local=local, size=size))
        return ctx.add_items(items, conflict=options.conflict)


@register
class DownloadKind(_Downloads):
    name = "download"
    label = "Download"
    Options = Download

    def drive(self, ctx: RunContext, options: Download) -> list[RunSummary]:
        connector = connector_for(ctx.job.account)
        if options.server_paths:
            listings = [ctx.list_output(prefix) for prefix in downloads.check_server_paths(options)]
            if not ctx.wait(_STABLE_GAP):
                return []
            again = [ctx.list_output(prefix) for prefix in downloads.check_server_paths(options)]
            found = []
            for before, after in zip(listings, again, strict=True):
                sizes = {output.path: output.size for output in before}
                found += [(o.path, o.size, "") for o in after if sizes.get(o.path) == o.size and o.size > 0]
            self.take(ctx, options, found)
        else:
            watches = {task_id: downloads.TaskWatch(task_id) for task_id in options.task_id_list}
            for listing in range(2):
                if listing and not any(watch.sizes for watch in watches.values()):
                    break  # every output was announced finished: no second listing needed to see it settle
                if listing and not ctx.wait(_STABLE_GAP):
                    return []
                for watch in watches.values():
                    # Read before the listing, as the watcher does: an ended task's empty files are complete.
                    state = downloads.ended(connector, watch.task_id, is_test_stop=False)
                    done, task = state.done, state.task
                    outputs = connector.outputs(watch.task_id)
                    complete = downloads.complete_outputs(watch, outputs, ended=done)
                    self.take(ctx, options, [(o.path, o.size, task.output_folder) for o in complete])
        return [ctx.transfer(self.legs(options)[0])]


@register
class AutoDownloadKind(_Downloads):
    name = "auto_download"
    label = "Auto download (each frame as it finishes)"
    Options = AutoDownload
    after_end_only = False

    def plan(self, *, account: FarmAccount, manifest: Manifest | None, options: Download, roots: list[Path]) -> Totals:
        downloads.local_root(options, roots)
        downloads.check_server_paths(options)  # never stored unchecked, though a watcher follows its tasks only
        downloads.check_tasks(connector_for(account), options.task_id_list)
        return Totals()

    def drive(self, ctx: RunContext, options: AutoDownload) -> list[RunSummary]:  # type: ignore[override]
        connector = connector_for(ctx.job.account)
        leg = self.legs(options)[0]
        watches = {task_id: downloads.TaskWatch(task_id) for task_id in options.task_id_list}
        summaries: list[RunSummary] = []
        while True:
            # Taken before the listings: a frame announced while this round lists or sends wakes the next.
            since = time.time()
            try:
                self._look(ctx, options, connector, watches)
            except FarmError as exc:
                if not exc.retryable:
                    raise
                # A farm away for a while (its API down, a network cut) is an outage to ride out: the
                # render goes on there, and this watcher looks again next period, saying why on the page.
                logger.warning(
                    "job %s: the farm did not answer (%s); looking again in %.0fs", ctx.job.pk, exc, options.sleep_time
                )
                ctx.note_watch(list(watches.values()), next_poll=options.sleep_time, error=f"the farm did not answer: {exc}")
                if not ctx.wait(options.sleep_time):
                    return summaries
                continue
            # An output seen once, not announced, is looked at again after the short stability gap, not a whole
            # period later: it is taken sleep_time + the gap + its transfer after it was written, at most.
            settling = any(watch.sizes for watch in watches.values())
            pause = min(options.sleep_time, _STABLE_GAP) if settling else options.sleep_time
            ctx.note_watch(list(watches.values()), next_poll=pause)
            summaries.append(ctx.transfer(leg))
            if summaries[-1].stopped or all(watch.final_listing_done for watch in watches.values()):
                return summaries
            # Farms that announce frames wake the watcher at once (transfers.farm_events), not a poll later.
            wake = partial(connector.announced_since, list(watches), since) if connector.takes_events else None
            if not ctx.wait(pause, wake=wake):
                return summaries

    def _look(self, ctx: RunContext, options: AutoDownload, connector: Any, watches: dict[int, downloads.TaskWatch]) -> None:
        """One round of the watcher's listings: each task's state, then its complete outputs as new items."""
        for watch in watches.values():
            if watch.final_listing_done:
                continue
            state = downloads.ended(connector, watch.task_id, is_test_stop=options.is_test_stop)
            done, status, task, leaves = state.done, state.status, state.task, state.leaves
            watch.status, watch.frames_expected = status, sum(leaf.frames_expected for leaf in leaves)
            if self.after_end_only and not done:
                continue
            # The status is read before the listing: what a task wrote before it ended is in this listing.
            complete = downloads.complete_outputs(watch, connector.outputs(watch.task_id), ended=done)
            self.take(ctx, options, [(o.path, o.size, task.output_folder) for o in complete])
            watch.ended, watch.failed = done, done and any(leaf.status.failed for leaf in leaves)
            watch.final_listing_done = done and not watch.sizes  # unannounced files settle first


@register
class AutoDownloadAfterTaskCompletedKind(AutoDownloadKind):
    name = "auto_download_after_task_completed"
    label = "Auto download after the task ends"
    Options = AutoDownloadAfterTaskCompleted
    after_end_only = True
