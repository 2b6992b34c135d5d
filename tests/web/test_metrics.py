"""GET /metrics: off without a token, refused without the right one, and with it every documented series,
from the database and from Redis (a real worker's heartbeat and failure counters); a Redis away leaves
its part out and says so."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from django.test import Client, override_settings

from tests.conftest import wait_for
from transfers import metrics, services, workers
from transfers.models import TransferJob

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-token-4c1f9e"


def _scrape(token: str | None = TOKEN) -> tuple[int, str]:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    response = Client().get("/metrics", **headers)
    return response.status_code, response.content.decode()


def _value(text: str, series: str) -> float:
    """The value of one sample line, `name{labels}` exactly as Prometheus prints it."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in the scrape:\n{text}")


def test_without_a_token_configured_there_is_no_endpoint():
    with override_settings(METRICS_TOKEN=""):
        assert _scrape()[0] == 404


@override_settings(METRICS_TOKEN=TOKEN)
def test_a_scraper_without_the_token_is_refused():
    assert _scrape(None)[0] == 401
    assert _scrape("wrong")[0] == 401
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}")
    assert response.status_code == 401 and TOKEN not in response.content.decode()
    assert Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


@override_settings(METRICS_TOKEN=TOKEN)
def test_every_documented_series_from_a_real_worker(celery_worker, make_account, make_manifest, make_user, allowed_dir):
    account = make_account(name="metrics farm")
    lead = make_user("metrics-lead", team=account.team, role="lead")
    manifest = make_manifest(account, files=3, user=lead)
    gone = manifest.entries.order_by("number").first()
    assert gone is not None
    os.unlink(gone.local)  # one file fails: missing_source
    queued = TransferJob.objects.create(kind="upload_asset", account=account, status=TransferJob.Status.PAUSED)
    job = services.job_create_upload(manifest=manifest, user=lead)
    wait_for(lambda: TransferJob.objects.get(pk=job.pk).is_terminal, timeout=60, what=f"the job\n{celery_worker.log_tail()}")
    job.refresh_from_db()
    assert (job.files_done, job.files_failed) == (2, 1)
    metrics.ws_opened("dashboard")
    try:
        wait_for(
            lambda: any(int(v.get("dashboard", 0)) >= 1 for v in _ws_values() if isinstance(v, dict)),
            timeout=10,
            what="the websocket count in Redis",
        )
        status, text = _scrape()
    finally:
        metrics.ws_closed("dashboard")

    assert status == 200
    assert (
        _value(text, 'rvweb_transfer_bytes_total{account="metrics farm",direction="upload",transport="local"}') == job.bytes_sent
    )
    assert _value(text, 'rvweb_transfer_files_total{account="metrics farm",direction="upload",transport="local"}') == 2
    assert _value(text, 'rvweb_transfer_files_failed{account="metrics farm",direction="upload"}') == 1
    assert _value(text, 'rvweb_jobs{state="completed_with_errors"}') >= 1
    assert _value(text, 'rvweb_jobs{state="paused"}') >= 1 and queued.pk
    assert _value(text, "rvweb_queue_depth") >= 0 and _value(text, "rvweb_queue_oldest_age_seconds") >= 0
    assert _value(text, "rvweb_redis_up") == 1
    assert _value(text, 'rvweb_file_failures_total{class="missing_source"}') >= 1
    assert _value(text, 'rvweb_websocket_clients{kind="dashboard"}') >= 1
    assert _value(text, "rvweb_workers") >= 1, "the session's worker announces itself"
    beats = [float(v) for v in re.findall(r'^rvweb_worker_heartbeat_timestamp_seconds\{worker="[^"]+"\} (\S+)$', text, re.M)]
    assert beats and max(beats) > time.time() - 120
    assert "rvweb_transfer_speed_bytes_per_second" in text


def _ws_values() -> list[object]:
    client = metrics._redis()
    keys = list(client.scan_iter(match=metrics._key("ws", "*")))
    return [json.loads(raw) for raw in client.mget(keys) if raw] if keys else []


def test_a_worker_announces_its_roots_and_transports_and_lapses_when_it_stops(settings):
    settings.RECOVER_EVERY = 10
    workers.heartbeat("probe@test", started=time.time())
    announced = {w["hostname"]: w for w in workers.live()}["probe@test"]
    assert announced["roots"] == [str(root) for root in settings.ALLOWED_LOCAL_ROOTS]
    assert {"local", "sftp", "s3"} <= set(announced["transports"])
    ttl = metrics._redis().ttl(f"{settings.KEY_PREFIX}:worker:probe@test")
    assert 0 < ttl <= 30, "gone three rounds (at least 30 s) after its last heartbeat"
    workers.gone("probe@test")
    assert "probe@test" not in {w["hostname"] for w in workers.live()}


@override_settings(METRICS_TOKEN=TOKEN)
def test_a_redis_that_does_not_answer_leaves_its_part_out(closed_port, make_account):
    make_account(name="still counted")
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{closed_port}/0"):
        status, text = _scrape()
        tally = metrics.Tally()
        tally.add("failures", "timeout")
        tally.flush()  # kept for the next try, never raised
    assert status == 200
    assert _value(text, "rvweb_redis_up") == 0
    assert "rvweb_jobs{" in text and "rvweb_file_failures_total" not in text
    assert tally._counts[("failures", "timeout")] == 1


@override_settings(METRICS_TOKEN=TOKEN)
def test_the_speed_is_the_latest_sample_of_each_running_job(make_account):
    from transfers.models import JobSample

    account = make_account(name="speedy")
    jobs = [TransferJob.objects.create(kind="upload_asset", account=account, status="running") for _ in range(3)]
    for number, job in enumerate(jobs):
        JobSample.objects.create(job=job, at=1.0, speed=1.0)
        JobSample.objects.create(job=job, at=2.0, speed=100.0 * (number + 1))  # the latest: 100, 200, 300
    TransferJob.objects.create(kind="upload_asset", account=account, status="completed")

    status, text = _scrape()

    assert status == 200
    assert _value(text, 'rvweb_transfer_speed_bytes_per_second{account="speedy",direction="upload"}') == 600.0
