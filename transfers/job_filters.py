"""The transfers list's filters and the job page's per-file table: GET parameters in, querysets out.

Both stay fast whatever the size: the list pages by job id (keyset, newest first) and never counts;
the per-file table pages by item number within one state at a time (index item_job_state_number) and
takes its totals from the job's counters. A value that is not one of the choices the user was offered
is ignored, with a message saying so, never a 500.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypedDict

from django.db.models import Q
from django.http import QueryDict
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format

from transfers import kinds, selectors
from transfers.models import JobSample, TransferItem, TransferJob

JOBS_PER_PAGE = 50
ITEMS_PER_PAGE = 100
SEARCH_MAX = 200
_SPEED_FRESH = 10.0  # seconds: an older sample says nothing about a job's speed now


@dataclass
class JobFilter:
    """The list's filters as chosen, the choices offered (from the selectors and the kinds registry),
    and what was ignored."""

    chosen: dict[str, str] = field(default_factory=dict)  # name -> the value as given (for the form and links)
    team: int | None = None
    account: int | None = None
    kind: str | None = None
    status: str | None = None
    since: date | None = None
    until: date | None = None
    before: int | None = None  # keyset: only jobs with a smaller id (the next, older page)
    problems: list[str] = field(default_factory=list)
    teams: list[tuple[int, str]] = field(default_factory=list)
    accounts: list[tuple[int, str]] = field(default_factory=list)
    kinds: list[tuple[str, str]] = field(default_factory=list)
    statuses: list[tuple[str, str]] = field(default_factory=list)

    def query(self, **change: Any) -> str:
        """The filters as a query string, with `change` applied (None removes one)."""
        params = QueryDict(mutable=True)
        for name, value in {**self.chosen, **change}.items():
            if value not in (None, ""):
                params[name] = str(value)
        return params.urlencode()


def job_filter_read(params: QueryDict, *, user: Any) -> JobFilter:
    """Read the list's filters; each must be one of the choices this user is offered."""
    chosen = JobFilter(
        teams=list(selectors.teams_for(user).values_list("pk", "name")),
        accounts=list(selectors.accounts_for(user).values_list("pk", "name")),
        kinds=[(name, kinds.get(name).label) for name in kinds.names()],
        statuses=[(str(value), str(label)) for value, label in TransferJob.Status.choices],
    )
    for name, offered in (("team", chosen.teams), ("account", chosen.accounts)):
        raw = params.get(name, "").strip()
        if raw:
            value = _int(raw)
            if value is None or value not in {pk for pk, _ in offered}:
                chosen.problems.append(f"{name} {raw[:40]!r} is not one of yours: ignored")
            else:
                setattr(chosen, name, value)
                chosen.chosen[name] = raw
    for name, offered_names in (("kind", chosen.kinds), ("status", chosen.statuses)):
        raw = params.get(name, "").strip()
        if raw:
            if raw not in {value for value, _ in offered_names}:
                chosen.problems.append(f"{name} {raw[:40]!r} is not a {name} rvweb knows: ignored")
            else:
                setattr(chosen, name, raw)
                chosen.chosen[name] = raw
    for name in ("since", "until"):
        raw = params.get(name, "").strip()
        if raw:
            day = _day(raw)
            if day is None:
                chosen.problems.append(f"{name} {raw[:40]!r} is not a date (YYYY-MM-DD): ignored")
            else:
                setattr(chosen, name, day)
                chosen.chosen[name] = raw
    raw = params.get("before", "").strip()
    if raw:
        before = _int(raw)
        if before is None or before < 1:
            chosen.problems.append(f"before {raw[:40]!r} is not a job number: showing the newest")
        else:
            chosen.before = before
    return chosen


def job_list_page(user: Any, chosen: JobFilter) -> tuple[list[TransferJob], int | None]:
    """One page of the jobs the user may see that pass the filters, newest first; and the id to pass as
    `before` for the next page (None: this is the last)."""
    jobs = selectors.jobs_for(user).order_by("-pk")
    if chosen.team is not None:
        jobs = jobs.filter(account__team_id=chosen.team)
    if chosen.account is not None:
        jobs = jobs.filter(account_id=chosen.account)
    if chosen.kind is not None:
        jobs = jobs.filter(kind=chosen.kind)
    if chosen.status is not None:
        jobs = jobs.filter(status=chosen.status)
    if chosen.since is not None:
        jobs = jobs.filter(created_at__gte=_start_of(chosen.since))
    if chosen.until is not None:
        jobs = jobs.filter(created_at__lt=_start_of(chosen.until + timedelta(days=1)))
    if chosen.before is not None:
        jobs = jobs.filter(pk__lt=chosen.before)
    # The page's ids first: sorting a team's jobs by id needs only the account index (it holds the id),
    # not every row with its options; then the page's rows, with their accounts and teams.
    ids = list(jobs.values_list("pk", flat=True)[: JOBS_PER_PAGE + 1])
    more = len(ids) > JOBS_PER_PAGE
    rows: list[TransferJob] = list(jobs.filter(pk__in=ids[:JOBS_PER_PAGE]))
    _note_speeds(rows)
    return rows, (rows[-1].pk if more else None)


def _note_speeds(jobs: list[TransferJob]) -> None:
    """Each running job's latest speed sample (not older than _SPEED_FRESH) as `job.speed`, in one query
    for the page's jobs (a subquery in the list's SELECT ran for every job the sort considered)."""
    running = [job.pk for job in jobs if job.is_running]
    latest: dict[int, tuple[float, float]] = {}
    if running:
        recent = JobSample.objects.filter(job_id__in=running, at__gte=time.time() - _SPEED_FRESH)
        for job_id, at, speed in recent.values_list("job_id", "at", "speed"):
            if job_id not in latest or at > latest[job_id][0]:
                latest[job_id] = (at, speed)
    for job in jobs:
        job.speed = latest[job.pk][1] if job.pk in latest else None  # type: ignore[attr-defined]


class JobRow(TypedDict):
    """One row of the transfers list, as text: the template only places it (50 rows of model lookups
    through the template engine cost more than the queries)."""

    pk: int
    url: str
    kind: str
    team: str
    account: str
    manifest: str
    status: str
    label: str
    files: str
    percent: int
    speed: str
    by: str
    created: str


def job_rows(jobs: list[TransferJob]) -> list[JobRow]:
    prefix = reverse("job-list")
    rows: list[JobRow] = []
    for job in jobs:
        files = f"{job.files_done}/{job.files_total}"
        if job.files_failed:
            files += f" ({job.files_failed} failed)"
        if job.is_terminal and job.files_not_sent:
            files += f" ({job.files_not_sent} not sent)"
        speed = getattr(job, "speed", None)
        rows.append(
            {
                "pk": job.pk,
                "url": f"{prefix}{job.pk}/",
                "kind": job.kind,
                "team": job.account.team.name,
                "account": job.account.name,
                "manifest": job.manifest.name if job.manifest else "—",
                "status": job.status,
                "label": job.label,
                "files": files,
                "percent": job.percent,
                "speed": f"{filesizeformat(speed)}/s" if job.is_running and speed is not None else "—",
                "by": job.created_by.get_username() if job.created_by else "—",
                "created": date_format(timezone.localtime(job.created_at), "Y-m-d H:i e"),
            }
        )
    return rows


# --- the per-file table -------------------------------------------------------------------------

ITEM_FILTERS: dict[str, tuple[str, list[str]]] = {
    "all": ("All", []),
    "failed": ("Failed", [TransferItem.State.FAILED]),
    "active": ("Active (not finished)", [TransferItem.State.PENDING]),
    "done": ("Done", [TransferItem.State.DONE]),
    "skipped": ("Skipped (unchanged)", [TransferItem.State.SKIPPED]),
}


class ItemRow(TypedDict):
    number: int
    local: str
    server: str
    size: int | None
    state: str
    bytes_done: int
    attempts: int
    error: str


class ItemPage(TypedDict):
    items: list[ItemRow]
    next: int | None  # pass as `after` for the next page; None: no more


class ItemsInvalid(ValueError):
    """A per-file table request with a bad parameter; the message names it."""


def job_items_page(job: TransferJob, params: QueryDict) -> ItemPage:
    """One page of a job's files: `state` one of ITEM_FILTERS, `after` an item number, `q` a piece of a path."""
    which = params.get("state", "all") or "all"
    if which not in ITEM_FILTERS:
        raise ItemsInvalid(f"state: one of {', '.join(ITEM_FILTERS)}")
    after = _int(params.get("after", "0") or "0")
    if after is None or after < 0:
        raise ItemsInvalid("after: an item number")
    search = params.get("q", "").strip()
    if len(search) > SEARCH_MAX:
        raise ItemsInvalid(f"q: at most {SEARCH_MAX} characters")
    items = TransferItem.objects.filter(job_id=job.pk, number__gt=after)
    states = ITEM_FILTERS[which][1]
    if len(states) == 1:
        items = items.filter(state=states[0])  # (job, state, number): no sort, whatever the job's size
    if search:
        items = items.filter(Q(local__contains=search) | Q(server__contains=search))
    fields = ("number", "local", "server", "size", "state", "bytes_done", "attempts", "error")
    rows: list[ItemRow] = list(items.order_by("number").values(*fields)[: ITEMS_PER_PAGE + 1])
    more = len(rows) > ITEMS_PER_PAGE
    rows = rows[:ITEMS_PER_PAGE]
    return {"items": rows, "next": rows[-1]["number"] if more else None}


def _int(raw: str) -> int | None:
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if -(2**62) < value < 2**62 else None


def _day(raw: str) -> date | None:
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        return None
    return day if 1970 <= day.year < 9999 else None  # the day after is a date too, and a datetime anywhere


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def items_filter_choices() -> list[tuple[str, str]]:
    return [(name, label) for name, (label, _) in ITEM_FILTERS.items()]
