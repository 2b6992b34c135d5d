"""The studio dashboard's state: what a viewer (or a kiosk) may see, as one JSON-ready dict.

The page renders it (json_script), /dashboard/state.json serves it again after a websocket reconnect,
and static/js/dashboard.js keeps it current from the dashboard groups' messages (transfers.progress).
The jobs always come from a selector (selectors.jobs_for, or selectors.jobs_of_kiosk).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypedDict

from django.db.models import Q, QuerySet, Sum
from django.urls import reverse
from django.utils import timezone

from transfers import kinds
from transfers.models import BandwidthBudget, TransferJob
from transfers.progress import JobLive

FAILURES_SHOWN = 10
FAILURES_SINCE = timedelta(days=1)
ACTIVE_SHOWN = 200


class DashboardJob(TypedDict):
    id: int
    url: str | None  # the job's page; None on a kiosk (no way in from a wall screen)
    kind: str
    direction: str  # upload or download (the kind says)
    team: str
    account: str
    manifest: str
    line: str  # the transfer line its run chose (a line budget covers it), or ""
    live: JobLive


class DashboardBudget(TypedDict):
    label: str
    scope: str
    account: str  # the account's name ("" for the studio's)
    line: str
    rate: float  # bytes per second, shared by every job it covers


class DashboardState(TypedDict):
    active: list[DashboardJob]  # queued, running and paused jobs (watchers among them)
    failures: list[DashboardJob]  # failed or completed with errors, in the last day
    budgets: list[DashboardBudget]  # the shared budgets the viewer may see; the page sums their jobs' speeds
    bytes_today: int  # bytes sent by the jobs that ran today (started or finished since midnight)
    today: str  # the date it counts (the server's time zone)
    generated_at: float  # epoch seconds


def _direction(job: TransferJob) -> str:
    try:
        return kinds.get(job.kind).direction
    except kinds.UnknownKind:
        return "upload"


def _row(job: TransferJob, *, links: bool) -> DashboardJob:
    return {
        "id": job.pk,
        "url": reverse("job-detail", args=[job.pk]) if links else None,
        "kind": job.get_kind_display(),
        "direction": _direction(job),
        "team": job.account.team.name,
        "account": job.account.name,
        "manifest": job.manifest.name if job.manifest else "",
        "line": str((job.route or {}).get("line", "")) if isinstance(job.route, dict) else "",
        "live": job.as_live(),
    }


def _midnight() -> datetime:
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def _budget(row: BandwidthBudget) -> DashboardBudget:
    return {
        "label": row.label,
        "scope": row.scope,
        "account": row.account.name if row.account is not None else "",
        "line": row.line,
        "rate": row.max_speed * 1024.0,
    }


def dashboard_state(
    jobs: QuerySet[TransferJob], *, links: bool = True, budgets: QuerySet[BandwidthBudget] | None = None
) -> DashboardState:
    """The dashboard of these jobs (a selector's queryset, already limited to what the viewer may see)."""
    midnight = _midnight()
    active = jobs.filter(status__in=TransferJob.ACTIVE).order_by("-created_at")[:ACTIVE_SHOWN]
    failed = jobs.filter(
        status__in=[TransferJob.Status.FAILED, TransferJob.Status.COMPLETED_WITH_ERRORS],
        finished_at__gte=timezone.now() - FAILURES_SINCE,
    ).order_by("-finished_at")[:FAILURES_SHOWN]
    ran_today = jobs.filter(Q(started_at__gte=midnight) | Q(finished_at__gte=midnight) | Q(status=TransferJob.Status.RUNNING))
    moved = ran_today.order_by().aggregate(total=Sum("bytes_sent"))["total"] or 0
    return {
        "active": [_row(job, links=links) for job in active],
        "failures": [_row(job, links=links) for job in failed],
        "budgets": [_budget(row) for row in budgets] if budgets is not None else [],
        "bytes_today": int(moved),
        "today": midnight.date().isoformat(),
        "generated_at": timezone.now().timestamp(),
    }
