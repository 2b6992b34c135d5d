"""Prometheus metrics: `GET /metrics` with `Authorization: Bearer $RVWEB_METRICS_TOKEN` (unset: no endpoint).

Every process may answer a scrape, so nothing is kept in one process's memory: the figures are read at
each scrape from the database (jobs by state, bytes and files moved, queue depth and age, speed) and
from Redis (worker heartbeats, websocket clients per web process, and the failure and retry counters the
workers' recorders add as they store their batches). A Redis that does not answer leaves its part out
and says so (`rvweb_redis_up 0`); the database part is still served.

Counters kept in Redis restart from zero if Redis loses its data: Prometheus's rate() reads that as a
counter reset. Adding to them never fails or slows a job (best effort, kept for the next try).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import CharField, Count, F, Min, OuterRef, Subquery, Sum
from django.db.models.functions import Cast, Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from transfers import kinds
from transfers.models import AuditEvent, TransferJob

logger = logging.getLogger(__name__)

WS_TTL = 60  # a web process's websocket count lapses this long after its last refresh (it died)


def _redis() -> Any:
    from transfers.locks import _client

    return _client(settings.REDIS_URL)


def _key(*parts: str) -> str:
    return ":".join([settings.KEY_PREFIX, "metrics", *parts])


# --- counters the workers add to --------------------------------------------------------------------


class Tally:
    """Failures and retries by error class, counted in a run and added to Redis in batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, what: str, code: str, count: int = 1) -> None:
        with self._lock:
            self._counts[(what, code or "unknown")] += count

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, Counter()
        if not counts:
            return
        try:
            pipe = _redis().pipeline(transaction=False)
            for (what, code), count in counts.items():
                pipe.hincrby(_key(what), code, count)
            pipe.execute()
        except (RedisError, OSError) as exc:
            logger.debug("metrics counters kept for the next try (%s)", type(exc).__name__)
            with self._lock:
                self._counts.update(counts)


# --- websocket clients of this web process ------------------------------------------------------------

_ws: Counter[str] = Counter()
_ws_lock = threading.Lock()
_ws_refresher: threading.Thread | None = None
_ws_wake = threading.Event()  # a change: write the counts now, not at the next period


def ws_opened(kind: str) -> None:
    _ws_change(kind, 1)


def ws_closed(kind: str) -> None:
    _ws_change(kind, -1)


def _ws_change(kind: str, step: int) -> None:
    global _ws_refresher
    with _ws_lock:
        _ws[kind] = max(0, _ws[kind] + step)
        if _ws_refresher is None:
            _ws_refresher = threading.Thread(target=_ws_refresh, name="rvweb-ws-metrics", daemon=True)
            _ws_refresher.start()
    _ws_wake.set()


def _ws_refresh() -> None:
    """Every few seconds, this process's counts into Redis (a key that lapses when the process dies)."""
    field = f"{socket.gethostname()}:{os.getpid()}"
    while True:
        with _ws_lock:
            counts = dict(_ws)
        with contextlib.suppress(RedisError, OSError):
            _redis().set(_key("ws", field), json.dumps(counts), ex=WS_TTL)
        _ws_wake.wait(WS_TTL / 4)
        _ws_wake.clear()


# --- the scrape ---------------------------------------------------------------------------------------


class RvwebCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from _moved()
        yield from _jobs()
        yield from _queue()
        yield from _speed()
        yield from _from_redis()


def _direction(kind: str) -> str:
    try:
        return str(kinds.get(kind).direction)
    except (KeyError, LookupError):
        return "unknown"


def _moved() -> Iterator[Metric]:
    moved = CounterMetricFamily(
        "rvweb_transfer_bytes", "Bytes really moved (not skipped, not resumed)", labels=["direction", "account", "transport"]
    )
    files = CounterMetricFamily(
        "rvweb_transfer_files", "Files moved (done, not skipped)", labels=["direction", "account", "transport"]
    )
    # A gauge: a retry sets a job's failed files pending again, and a counter that goes down reads as a
    # reset (increase() would count every failure again). rvweb_file_failures_total counts each failure.
    failed = GaugeMetricFamily(
        "rvweb_transfer_files_failed",
        "Files failed in the jobs kept (down when a job is retried)",
        labels=["direction", "account"],
    )
    rows = (
        TransferJob.objects.values("kind", "account__name", "account__kind", "route__transport")
        .annotate(sent=Sum("bytes_sent"), done=Sum(F("files_done") - F("files_skipped")), failures=Sum("files_failed"))
        .order_by()
    )
    sums: dict[tuple[str, str, str], list[int]] = {}
    fails: Counter[tuple[str, str]] = Counter()
    for row in rows:
        direction = _direction(row["kind"])
        transport = row["route__transport"] or row["account__kind"]
        figures = sums.setdefault((direction, row["account__name"], str(transport)), [0, 0])
        figures[0] += row["sent"] or 0
        figures[1] += row["done"] or 0
        fails[(direction, row["account__name"])] += row["failures"] or 0
    for where, (sent, done) in sorted(sums.items()):
        moved.add_metric(list(where), sent)
        files.add_metric(list(where), done)
    for who, count in sorted(fails.items()):
        failed.add_metric(list(who), count)
    yield from (moved, files, failed)


def _jobs() -> Iterator[Metric]:
    jobs = GaugeMetricFamily("rvweb_jobs", "Jobs by state", labels=["state"])
    counts = dict(TransferJob.objects.values_list("status").annotate(n=Count("id")).order_by())
    for state, _ in TransferJob.Status.choices:
        jobs.add_metric([state], counts.get(state, 0))
    yield jobs


def _queue() -> Iterator[Metric]:
    queued = TransferJob.objects.filter(status=TransferJob.Status.QUEUED)
    depth = GaugeMetricFamily("rvweb_queue_depth", "Jobs waiting for a worker")
    depth.add_metric([], queued.count())
    age = GaugeMetricFamily("rvweb_queue_oldest_age_seconds", "How long the oldest queued job has waited (0: none)")
    # Queued since it was made, or since a user resumed or retried it (audited): a job retried days after
    # it was made is not a queue days old.
    back = (
        AuditEvent.objects.filter(
            target_type="TransferJob", target_id=Cast(OuterRef("pk"), CharField()), action__in=("job.resume", "job.retry")
        )
        .order_by("-id")
        .values("created_at")[:1]
    )
    since = queued.annotate(since=Coalesce(Subquery(back), F("created_at")))
    oldest = since.aggregate(first=Min("since"))["first"]
    age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
    yield from (depth, age)


def _speed() -> Iterator[Metric]:
    from transfers.models import JobSample

    speed = GaugeMetricFamily(
        "rvweb_transfer_speed_bytes_per_second",
        "Speed of the running jobs (their latest sample)",
        labels=["direction", "account"],
    )
    latest = JobSample.objects.filter(job_id=OuterRef("pk")).order_by("-at").values("speed")[:1]
    running = (
        TransferJob.objects.filter(status=TransferJob.Status.RUNNING)
        .annotate(latest=Subquery(latest))
        .values_list("kind", "account__name", "latest")
    )  # one query, whatever the number of running jobs
    total: dict[tuple[str, str], float] = {}
    for kind, account, speed_now in running:
        total[(_direction(kind), account)] = total.get((_direction(kind), account), 0.0) + (speed_now or 0.0)
    for labels, value in sorted(total.items()):
        speed.add_metric(list(labels), value)
    yield speed


def _ws_counts(raw: Any) -> dict[str, int]:
    """One web process's counts as it wrote them; anything else (a broken or foreign entry) counts nothing."""
    try:
        counts = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(counts, dict):
        return {}
    return {
        str(kind): count
        for kind, count in counts.items()
        if kind in _WS_KINDS and isinstance(count, int) and not isinstance(count, bool) and count > 0
    }


_WS_KINDS = ("job", "dashboard", "kiosk")


def _from_redis() -> Iterator[Metric]:
    from transfers import workers

    up = GaugeMetricFamily("rvweb_redis_up", "Whether Redis answered this scrape")
    try:
        client = _redis()
        failures = client.hgetall(_key("failures"))
        retries = client.hgetall(_key("retries"))
        ws_keys = list(client.scan_iter(match=_key("ws", "*"), count=500))
        ws_values = client.mget(ws_keys) if ws_keys else []
        live = workers.live()
    except (RedisError, OSError) as exc:
        logger.warning("metrics: Redis did not answer (%s)", type(exc).__name__)
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield up
    for name, values, text in (
        ("rvweb_file_failures", failures, "Files that failed, by error class"),
        ("rvweb_file_retries", retries, "Attempts retried, by error class"),
    ):
        family = CounterMetricFamily(name, text, labels=["class"])
        for code, count in sorted(values.items()):
            family.add_metric([code.decode() if isinstance(code, bytes) else str(code)], int(count))
        yield family
    clients = GaugeMetricFamily("rvweb_websocket_clients", "Websocket clients connected, by kind", labels=["kind"])
    summed: Counter[str] = Counter()
    for raw in ws_values:
        summed.update(_ws_counts(raw))
    for kind in _WS_KINDS:
        clients.add_metric([kind], summed.get(kind, 0))
    yield clients
    beat = GaugeMetricFamily("rvweb_worker_heartbeat_timestamp_seconds", "A live worker's last heartbeat", labels=["worker"])
    up_workers = GaugeMetricFamily("rvweb_workers", "Workers with a heartbeat younger than their lapse")
    for worker in live:
        beat.add_metric([worker["hostname"]], worker["beat"])
    up_workers.add_metric([], len(live))
    yield from (beat, up_workers)


# --- the endpoint -------------------------------------------------------------------------------------


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The figures in Prometheus's text format, for a scraper holding RVWEB_METRICS_TOKEN (a header, never a URL)."""
    token = str(settings.METRICS_TOKEN)
    if not token:
        raise Http404("metrics are off: set RVWEB_METRICS_TOKEN")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("a bearer token is needed (RVWEB_METRICS_TOKEN)\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="rvweb metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RvwebCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
