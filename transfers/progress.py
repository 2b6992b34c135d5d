"""The only door to the channel layer: typed progress, state and watch messages of a job.

Every message goes to the job's group `job.<id>` (its page) and to the dashboards: the group of the
job's team `team.<id>` and the staff's `teams.all` (the channel layer puts its own prefix before each).
Progress is throttled per job and group (settings.PROGRESS_MAX_PER_SECOND for the job's page,
settings.DASHBOARD_MAX_PER_SECOND for the dashboards) and coalesced: between two sends only the latest
snapshot is kept. State changes are never throttled. Every message carries `sent_at` (epoch seconds)
so a client can tell how late it is. Publishing is best effort: a channel layer that is down or hangs
must not fail or slow a transfer, so a send is bounded by SEND_TIMEOUT and failures are logged and
dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Literal, TypedDict

from channels.layers import get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

STAFF_GROUP = "teams.all"  # every team's jobs: the staff's dashboards
DASHBOARD_LAYER = "dashboard"  # the channel layer of the dashboards' groups (settings.CHANNEL_LAYERS: pub/sub)


class ActiveFile(TypedDict):
    name: str  # the server path's last component
    done: int
    size: int


class JobFigures(TypedDict):
    """A job's counters (TransferJob.figures): from its row, or live from the worker's tracker."""

    percent: int
    files_total: int
    files_done: int
    files_skipped: int
    files_failed: int
    files_not_sent: int
    bytes_total: int
    bytes_done: int
    bytes_sent: int
    figures_at: float | None  # epoch seconds when they were measured: the newest wins on the page


class JobLive(JobFigures):
    """Everything the job page shows (TransferJob.as_live): the state rules come with it, decided by the model."""

    status: str
    label: str
    actions: list[str]  # what a user may do now: pause, resume, cancel, retry
    running: bool
    waiting: bool  # queued: waiting for a worker
    terminal: bool
    settled: bool  # terminal and no run still stopping: the figures are final
    started_at: str | None
    finished_at: str | None
    duration: float | None
    average_speed: float | None  # bytes actually sent per second; None when nothing was sent
    error: str
    preparing: bool  # the worker is still making the job's items from its manifest
    items_prepared: int
    watch: WatchState | None  # a download watcher's last news (None for other jobs)


class JobProgress(JobFigures):
    """Live figures of a running job. No status: the worker learns of a pause a second late, so a
    status from here could undo the state message that announced it; states come in JobState only."""

    type: Literal["job.progress"]
    job: int
    speed: float  # bytes per second, smoothed over the last seconds
    eta: float | None  # seconds
    active: list[ActiveFile]  # a few of the files being sent now


class WatchTask(TypedDict):
    """What a download's watcher knows of one render task."""

    task_id: int
    status: str  # the farm's status, in words (its leaves' for a parent)
    ended: bool
    frames_expected: int
    outputs_seen: int  # output files in the task's folder at the last listing
    settling: int  # of those, not announced and still growing (or seen once): taken at a later listing


class WatchState(TypedDict):
    tasks: list[WatchTask]
    next_poll_at: str | None  # ISO time of the next listing
    error: str  # the last listing's problem, if any


class JobWatch(TypedDict):
    type: Literal["job.watch"]
    job: int
    watch: WatchState


class JobState(TypedDict, total=False):
    type: Literal["job.state"]
    job: int
    status: str
    live: JobLive  # the row as it was once the change was committed


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def team_group(team_id: int) -> str:
    return f"team.{team_id}"


def dashboard_groups(team_id: int | None) -> tuple[str, ...]:
    """The dashboards that show a job of this team (None: a job whose team is unknown, staff only)."""
    return (STAFF_GROUP,) if team_id is None else (team_group(team_id), STAFF_GROUP)


# A send that takes longer is dropped: a Redis that hangs must not hold up a transfer's bookkeeping.
SEND_TIMEOUT = 1.0
# After a failed send, messages are dropped without trying for this long, so an outage costs one
# timeout (and one log line) per pause rather than one per message.
_QUIET_AFTER_FAILURE = 5.0
_quiet_until = 0.0


def is_dashboard_group(group: str) -> bool:
    return group == STAFF_GROUP or group.startswith("team.")


_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0
_loop_lock = threading.Lock()


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """This process's publishing loop, in a daemon thread, started on first use (and again in a forked child).

    One loop for every send, so the channel layers keep their Redis connections: async_to_sync made a
    thread, a loop and new connections for each message (~20 ms a send, seconds on a busy worker)."""
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid() or _loop.is_closed():
            _loop, _loop_pid = asyncio.new_event_loop(), os.getpid()
            threading.Thread(target=_loop.run_forever, name="rvweb-progress", daemon=True).start()
        return _loop


def _send(groups: tuple[str, ...], message: JobProgress | JobState | JobWatch) -> None:
    """To each group, with `sent_at` added (epoch seconds, so a client can tell how late a message came)
    and the job's `team` when known. The dashboards' groups are on their own layer (DASHBOARD_LAYER),
    the job pages' on the default one."""
    global _quiet_until
    layer = get_channel_layer()
    if layer is None or time.monotonic() < _quiet_until:
        return
    dashboards = get_channel_layer(DASHBOARD_LAYER) if any(map(is_dashboard_group, groups)) else None

    stamped: dict[str, object] = {**message, "sent_at": time.time()}
    teams = [group[len("team.") :] for group in groups if group.startswith("team.")]
    if teams:
        stamped["team"] = int(teams[0])  # the dashboards' hubs route by it (transfers.dashboard_hub)

    async def send_all() -> None:
        for group in groups:
            await (dashboards if dashboards is not None and is_dashboard_group(group) else layer).group_send(group, stamped)

    future = asyncio.run_coroutine_threadsafe(send_all(), _publisher_loop())
    try:
        future.result(SEND_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - best effort: nothing here may fail a transfer
        future.cancel()
        _quiet_until = time.monotonic() + _QUIET_AFTER_FAILURE
        logger.warning(
            "progress for job %s not published (%s); dropping messages for %.0fs",
            message["job"],
            type(exc).__name__,
            _QUIET_AFTER_FAILURE,
        )


def publish_state(job_id: int, *, status: str, live: JobLive | None = None, team_id: int | None = None) -> None:
    message = JobState(type="job.state", job=job_id, status=status)
    if live is not None:
        message["live"] = live
    _send((job_group(job_id), *dashboard_groups(team_id)), message)


def publish_watch(job_id: int, watch: WatchState, *, team_id: int | None = None) -> None:
    """A download watcher's news (after each listing), for its page and the dashboards."""
    _send((job_group(job_id), *dashboard_groups(team_id)), JobWatch(type="job.watch", job=job_id, watch=watch))


class _Lane:
    """Groups that get a job's progress at one pace, and the message held for them meanwhile."""

    def __init__(self, groups: tuple[str, ...], per_second: int) -> None:
        self.groups = groups
        self.interval = 1.0 / per_second
        self.next_at = 0.0
        self.pending: JobProgress | None = None


class ProgressThrottle:
    """Publishes at most `per_second` progress messages for one job to its page's group, and at most
    `dashboard_per_second` to the dashboards' groups (its team's and the staff's); the latest offered
    wins in each."""

    def __init__(
        self,
        job_id: int,
        *,
        team_id: int | None = None,
        per_second: int | None = None,
        dashboard_per_second: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.clock = clock
        page_rate = per_second or settings.PROGRESS_MAX_PER_SECOND
        self._page = _Lane((job_group(job_id),), page_rate)
        # Never faster than the page: at the same rate both lanes go out together, as one send.
        dashboard_rate = dashboard_per_second or min(page_rate, settings.DASHBOARD_MAX_PER_SECOND)
        self._dashboards = _Lane(dashboard_groups(team_id), dashboard_rate)
        self._lanes = (self._page, self._dashboards)
        self._lock = threading.Lock()

    @property
    def interval(self) -> float:
        return self._page.interval

    def offer(self, message: JobProgress) -> bool:
        """Send now to the groups whose interval has passed, keep it for the others; True when the job's page got it."""
        with self._lock:
            now = self.clock()
            groups: tuple[str, ...] = ()
            for lane in self._lanes:
                if now < lane.next_at:
                    lane.pending = message
                else:
                    lane.next_at = now + lane.interval
                    lane.pending = None
                    groups += lane.groups
        if groups:
            _send(groups, message)
        return self._page.groups[0] in groups

    def flush(self) -> None:
        """Send the held messages now (the job's last figures)."""
        with self._lock:
            held = [(lane.groups, lane.pending) for lane in self._lanes if lane.pending is not None]
            for lane in self._lanes:
                lane.pending = None
        if len(held) == 2 and held[0][1] is held[1][1]:
            held = [(held[0][0] + held[1][0], held[0][1])]
        for groups, message in held:
            _send(groups, message)

    def discard(self) -> None:
        """Drop the held messages: they describe a state a user's action has already replaced."""
        with self._lock:
            for lane in self._lanes:
                lane.pending = None
