"""The workers page (/workers/, staff): each live worker with the folders it sees, the transports it
runs, its load and its last heartbeat (transfers.workers); jobs waiting for a worker, and why."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from redis.exceptions import RedisError

from transfers import selectors, workers


@login_required
def workers_page(request: HttpRequest) -> HttpResponse:
    if not (request.user.is_staff or request.user.is_superuser):
        raise Http404("the workers page is for staff")
    problem = ""
    try:
        live = workers.live()
    except (RedisError, OSError) as exc:
        live, problem = [], f"Redis does not answer ({type(exc).__name__}): the workers' heartbeats cannot be read now."
    rows = [
        {
            **worker,
            "beat_at": datetime.fromtimestamp(float(worker.get("beat", 0)), tz=UTC),
            "started_at": datetime.fromtimestamp(float(worker.get("started", 0)), tz=UTC),
        }
        for worker in live
    ]
    waiting = selectors.jobs_for(request.user).exclude(waiting="").filter(status="queued").order_by("pk")[:100]
    return render(request, "transfers/workers.html", {"workers": rows, "waiting": waiting, "problem": problem})
