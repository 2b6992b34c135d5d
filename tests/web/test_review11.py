"""Hostile review of the many-machines work (issue 11): broken worker entries in Redis, the shared
budget's bucket when its rate changes, the metrics scrape on odd rows."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings

from transfers import budget, metrics, placement, tasks, workers
from transfers.models import TransferJob

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "review11-token-7d2e"

# What a broken (an older version, a hand edit) or hostile worker entry may hold.
_BROKEN = [
    "not json",
    "[]",
    "5",
    '"celery@x"',
    "null",
    json.dumps({"roots": ["/"], "transports": ["local", "sftp", "s3"]}),  # no name
    json.dumps({"hostname": "as-string@x", "roots": "/mnt/elsewhere", "transports": ["local", "sftp", "s3"], "beat": 1.0}),
    json.dumps({"hostname": "empty-root@x", "roots": [""], "transports": ["local", "sftp", "s3"], "beat": 1.0}),
    json.dumps({"hostname": "relative@x", "roots": ["mnt"], "transports": ["local", "sftp", "s3"], "beat": 1.0}),
    json.dumps({"hostname": "odd-load@x", "roots": ["/srv/none"], "transports": "sftp", "load": "high", "beat": "x"}),
    json.dumps({"hostname": ["list"], "roots": [], "transports": [], "beat": 1.0}),
]


_BROKEN_NAMES = {"as-string@x", "empty-root@x", "relative@x", "odd-load@x"}


@pytest.fixture
def broken_workers():
    client = metrics._redis()
    keys = [f"{settings.KEY_PREFIX}:worker:broken-{uuid.uuid4().hex[:6]}-{n}" for n in range(len(_BROKEN))]
    for key, raw in zip(keys, _BROKEN, strict=True):
        client.set(key, raw, ex=120)
    try:
        yield keys
    finally:
        client.delete(*keys)


def test_broken_worker_entries_are_left_out_of_the_live_workers(broken_workers):
    workers.heartbeat("sound@review", started=1.0)
    try:
        live = workers.live()
    finally:
        workers.gone("sound@review")
    names = {w["hostname"] for w in live}
    assert "sound@review" in names and not names & _BROKEN_NAMES, live
    assert all(isinstance(root, str) and root.startswith("/") for root in live[0]["roots"])
    assert all(root.is_absolute() and str(root) != "/" for root in workers.studio_roots()), workers.studio_roots()


def test_a_job_no_sound_worker_sees_waits_though_a_broken_entry_claims_every_folder(broken_workers, make_account, make_manifest):
    account = make_account(name="placed by review")
    manifest = make_manifest(account, files=2)
    job = TransferJob.objects.create(kind="upload_asset", account=account, manifest=manifest)
    folder = str(Path(manifest.entries.order_by("number").first().local).parent)
    with override_settings(ALLOWED_LOCAL_ROOTS=[Path("/srv/review-none")]):
        where = placement.place(job, me="me@review")
    # Waiting, or sent to a sound worker that sees the folder (the session's test worker does): never
    # to an entry with roots '' or '/mnt/elsewhere' given as a string, nor run here.
    sound = {w["hostname"]: w["roots"] for w in workers.live()}
    assert not where.here and where.worker not in _BROKEN_NAMES, where
    assert where.waiting == f"no worker sees {folder}" or any(placement._under(folder, r) for r in sound[where.worker]), where
    # The recovery round reads the same entries: it must not fail (no job would be recovered at all).
    TransferJob.objects.filter(pk=job.pk).update(waiting="sent to worker odd-load@x")
    assert tasks._placing({job.pk}) == {job.pk}


@override_settings(METRICS_TOKEN=TOKEN)
def test_the_scrape_and_the_workers_page_survive_broken_entries(broken_workers, make_user):
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert "rvweb_redis_up 1.0" in response.content.decode()
    staff = Client()
    staff.force_login(make_user("review11-staff", staff=True))
    assert staff.get("/workers/").status_code == 200


@override_settings(METRICS_TOKEN=TOKEN)
def test_a_garbage_websocket_count_does_not_break_the_scrape():
    key = f"{settings.KEY_PREFIX}:metrics:ws:review-{uuid.uuid4().hex[:6]}"
    client = metrics._redis()
    client.set(key, "{not json", ex=60)
    other = key + "-b"
    client.set(other, json.dumps({"job": "x", "dashboard": -5, "kiosk": 2}), ex=60)
    try:
        response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    finally:
        client.delete(key, other)
    assert response.status_code == 200
    text = response.content.decode()
    assert 'rvweb_websocket_clients{kind="dashboard"} ' in text and 'rvweb_websocket_clients{kind="dashboard"} -' not in text


def test_a_lowered_budget_does_not_charge_the_old_rates_debt_at_the_new_rate():
    key = budget.budget_key(10**9 + int(uuid.uuid4().int % 10**6))
    fast, slow = 100e6, 1e6  # 100 MB/s, lowered to 1 MB/s
    try:
        for _ in range(16):  # 16 streams reserve a 0.1 s chunk each: ~1.6 s of debt at 100 MB/s
            budget._redis_reserve(key, fast, int(fast / 10))
        waited = budget._redis_reserve(key, slow, 4096)
    finally:
        metrics._redis().delete(key)
    # The 160 MB already reserved are sent within ~1.6 s on the old schedule; charged again at 1 MB/s
    # they stalled every job on the budget for ~160 s.
    assert waited < 5.0, f"the next chunk waits {waited:.0f} s after the budget was lowered"


def test_the_reservation_script_with_rate_zero_is_no_limit_not_an_infinite_wait():
    key = budget.budget_key(10**9 + int(uuid.uuid4().int % 10**6))
    try:
        assert budget._redis_reserve(key, 0.0, 4096) == 0.0
        assert budget._redis_reserve(key, 1000.0, 0) == 0.0
    finally:
        metrics._redis().delete(key)


@override_settings(METRICS_TOKEN=TOKEN)
def test_a_series_typed_counter_never_goes_down_when_a_job_is_retried(make_account):
    account = make_account(name="retried farm")
    job = TransferJob.objects.create(kind="upload_asset", account=account, status=TransferJob.Status.COMPLETED_WITH_ERRORS)
    TransferJob.objects.filter(pk=job.pk).update(files_failed=2, files_done=3, bytes_sent=1000)

    def counters() -> dict[str, float]:
        text = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
        kinds = {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}
        found = {}
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            name = series.split("{")[0]
            if 'account="retried farm"' in series and kinds.get(name) == "counter":
                found[series] = float(value)
        return found

    before = counters()
    assert before, "the account's counters are in the scrape"
    # Retry: the failed files are pending again (job_recount stores files_failed=0).
    TransferJob.objects.filter(pk=job.pk).update(files_failed=0, status=TransferJob.Status.QUEUED)
    after = counters()
    went_down = {series: (value, after.get(series, 0.0)) for series, value in before.items() if after.get(series, 0.0) < value}
    assert not went_down, f"a counter that goes down reads as a reset: increase() counts it all again {went_down}"


def test_a_burst_of_jobs_is_spread_over_the_workers_that_see_their_files(make_account, make_manifest):
    """The least loaded worker was chosen by its host's 1-minute load average alone, which does not move
    between the placements of one burst (nor much for I/O-bound copies): every job went to one worker."""
    client = metrics._redis()
    names = [f"spread-{uuid.uuid4().hex[:6]}-{n}@x" for n in range(2)]
    account = make_account(name="spread farm")
    jobs = [
        TransferJob.objects.create(kind="upload_asset", account=account, manifest=make_manifest(account, files=1))
        for _ in range(6)
    ]
    for name, load in zip(names, (0.50, 0.60), strict=True):
        entry = {"hostname": name, "roots": ["/"], "transports": workers.transports(), "load": load, "beat": 1.0, "started": 1.0}
        client.set(f"{settings.KEY_PREFIX}:worker:{name}", json.dumps(entry), ex=120)
    try:
        with override_settings(ALLOWED_LOCAL_ROOTS=[Path("/srv/review-none")]):
            for job in jobs:
                assert tasks._placed_here(job.pk, "me@review") is False
        chosen = [TransferJob.objects.get(pk=job.pk).waiting for job in jobs]
    finally:
        client.delete(*(f"{settings.KEY_PREFIX}:worker:{name}" for name in names))
        client.delete(*(placement.own_queue(name) for name in names))  # the forwarded messages
    # The session's test worker sees the files too: count only the two announced here.
    ours = [why.removeprefix("sent to worker ") for why in chosen if why.removeprefix("sent to worker ") in names]
    assert set(ours) == set(names), f"a burst of 6 jobs went to {chosen}"


@override_settings(METRICS_TOKEN=TOKEN)
def test_odd_routes_and_unknown_kinds_are_scraped(make_account, make_user):
    account = make_account(name="odd routes farm")
    for route in (None, [], "x", {"transport": {"nested": 1}}, {"transport": 5, "line": ["HK"]}):
        job = TransferJob.objects.create(kind="upload_asset", account=account, status=TransferJob.Status.RUNNING)
        TransferJob.objects.filter(pk=job.pk).update(route=route, bytes_sent=10)
    unknown = TransferJob.objects.create(kind="upload_asset", account=account)
    TransferJob.objects.filter(pk=unknown.pk).update(kind="retired_kind", bytes_sent=7)
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'direction="unknown"' in text
    staff = Client()
    staff.force_login(make_user("odd-routes-staff", staff=True))
    assert staff.get("/dashboard/state.json").status_code == 200


def test_a_lowered_budget_while_redis_is_away_does_not_charge_the_old_debt_either():
    from redis.exceptions import ConnectionError as RedisConnectionError

    def away(key: str, rate: float, count: int) -> float:
        raise RedisConnectionError("gone")

    bucket = budget.SharedBudgets(None, reserve=away)
    bucket.refresh([budget.Applied("k", 100e6, "the studio")])
    for _ in range(16):
        bucket.reserve(int(10e6))
    bucket.refresh([budget.Applied("k", 1e6, "the studio")])
    waited = bucket.reserve(4096)
    assert waited < 5.0, f"the next chunk waits {waited:.0f} s after the budget was lowered"


@override_settings(METRICS_TOKEN=TOKEN)
def test_a_job_retried_days_after_it_was_made_is_not_a_queue_days_old(make_account, make_user):
    """rvweb_queue_oldest_age_seconds was measured from created_at: a job retried (or resumed) three days
    after it was made fired the documented alert (queue older than 10 minutes) the moment it was queued."""
    from datetime import timedelta

    from django.utils import timezone

    from transfers import services

    TransferJob.objects.filter(status=TransferJob.Status.QUEUED).update(status=TransferJob.Status.CANCELLED)
    account = make_account(name="retried days later")
    lead = make_user("retry-lead", team=account.team, role="lead")
    job = TransferJob.objects.create(kind="upload_asset", account=account, status=TransferJob.Status.FAILED)
    TransferJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(days=3))
    assert services.job_retry(job=TransferJob.objects.get(pk=job.pk), user=lead)
    text = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    age = next(float(line.split()[1]) for line in text.splitlines() if line.startswith("rvweb_queue_oldest_age_seconds "))
    assert age < 600, f"the queue reads {age / 3600:.0f} h old"
