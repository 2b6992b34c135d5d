"""The studio's shared bandwidth budget (issue 11, item 2): set through the API by whom it belongs to,
audited, and held by two jobs running at once in two worker processes through one Redis bucket."""

from __future__ import annotations

import json
import os

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework.test import APIClient

from tests.conftest import wait_for
from transfers import budget, services
from transfers.models import AuditEvent, BandwidthBudget, TransferJob

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1 << 20


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_budgets_are_set_by_whom_they_belong_to(make_account, make_user):
    account = make_account(name="budgeted")
    other = make_account(name="not yours")
    lead = make_user("budget-lead", team=account.team, role="lead")
    member = make_user("budget-member", team=account.team, role="member")
    staff = make_user("budget-staff", staff=True)

    made = _client(lead).post("/api/budgets/", {"scope": "account", "account": account.pk, "max_speed": 2048}, format="json")
    assert made.status_code == 200 and made.json()["label"] == "account budgeted", made.content
    line = _client(lead).post(
        "/api/budgets/", {"scope": "line", "account": account.pk, "line": "HKCT", "max_speed": 512}, format="json"
    )
    assert line.status_code == 200
    assert (
        _client(member)
        .post("/api/budgets/", {"scope": "account", "account": account.pk, "max_speed": 1}, format="json")
        .status_code
        == 403
    )
    assert (
        _client(lead).post("/api/budgets/", {"scope": "account", "account": other.pk, "max_speed": 1}, format="json").status_code
        == 400
    )
    assert _client(lead).post("/api/budgets/", {"scope": "studio", "max_speed": 1}, format="json").status_code == 403
    bad = _client(lead).post("/api/budgets/", {"scope": "line", "account": account.pk, "max_speed": 5}, format="json")
    assert bad.status_code == 400 and "line" in json.dumps(bad.json())
    studio = _client(staff).post("/api/budgets/", {"scope": "studio", "max_speed": 20_000}, format="json")
    assert studio.status_code == 200

    seen = {row["label"] for row in _client(member).get("/api/budgets/").json()}
    assert seen == {"the studio", "account budgeted", "line HKCT of account budgeted"}
    assert {row["label"] for row in _client(make_user("outsider", team=other.team, role="lead")).get("/api/budgets/").json()} == {
        "the studio"
    }
    changed = _client(lead).post("/api/budgets/", {"scope": "account", "account": account.pk, "max_speed": 4096}, format="json")
    assert changed.json()["max_speed"] == 4096 and BandwidthBudget.objects.filter(scope="account").count() == 1
    removed = _client(lead).post("/api/budgets/", {"scope": "account", "account": account.pk, "max_speed": 0}, format="json")
    assert removed.status_code == 204 and not BandwidthBudget.objects.filter(scope="account").exists()
    rows = list(AuditEvent.objects.filter(action="budget.set").order_by("pk").values_list("before", "after"))
    assert rows[-1] == ({"max_speed": 4096}, {"scope": "account", "line": "", "max_speed": None})
    assert len(rows) == 5


def test_a_budget_is_kept_in_the_process_while_redis_is_away():
    def away(key: str, rate: float, count: int) -> float:
        raise RedisConnectionError("gone")

    bucket = budget.SharedBudgets(None, reserve=away)
    bucket.refresh([budget.Applied("k", 1000.0, "the studio")])
    assert bucket.rate == 1000.0, "a shared budget limits the run (no kernel copy, small chunks)"
    assert bucket.reserve(1000) == pytest.approx(1.0, abs=0.05), "a second per 1000 bytes, as the rate says"
    assert bucket.reserve(1000) == pytest.approx(2.0, abs=0.05), "a debt: the next waits behind it"
    bucket.refresh([])
    assert bucket.rate is None and bucket.reserve(10**9) == 0.0


def _files(folder, count: int, size: int) -> list:
    folder.mkdir(parents=True)
    made = []
    for number in range(count):
        path = folder / f"f{number}.bin"
        path.write_bytes(os.urandom(size))
        made.append(path)
    return made


def test_two_jobs_in_two_worker_processes_stay_within_one_studio_budget(celery_worker, make_account, make_user, allowed_dir):
    rate_kbs = 4000  # ~4.1 MB/s for both jobs together
    BandwidthBudget.objects.create(scope=BandwidthBudget.Scope.STUDIO, max_speed=rate_kbs)
    jobs = []
    for name in ("budget-a", "budget-b"):
        account = make_account(name=name)
        lead = make_user(f"lead-{name}", team=account.team, role="lead")
        files = _files(allowed_dir / name, 3, 4 * MIB)
        document = {"asset": [{"local": str(p), "server": str(p)} for p in files]}
        manifest = services.manifest_import(name=name, account=account, data=json.dumps(document).encode(), user=lead)
        jobs.append(services.job_create_upload(manifest=manifest, user=lead))

    wait_for(
        lambda: all(TransferJob.objects.get(pk=job.pk).is_terminal for job in jobs),
        timeout=90,
        what=f"both jobs to end\n{celery_worker.log_tail()}",
    )
    done = [TransferJob.objects.get(pk=job.pk) for job in jobs]
    assert all(job.status == TransferJob.Status.COMPLETED for job in done), [job.error for job in done]
    start = min(job.started_at for job in done)
    end = max(job.finished_at for job in done)
    overlap = min(job.finished_at for job in done) - max(job.started_at for job in done)
    assert overlap.total_seconds() > 0, "the two jobs ran at the same time (two worker processes)"
    moved = sum(job.bytes_sent for job in done)
    rate = moved / (end - start).total_seconds()
    budget_rate = rate_kbs * 1024
    print(f"two jobs, one budget: {rate / 1e6:.3f} MB/s of {budget_rate / 1e6:.3f} MB/s ({rate / budget_rate:.3f})")
    assert rate <= 1.10 * budget_rate, f"together {rate / 1e6:.2f} MB/s, over the {budget_rate / 1e6:.2f} MB/s budget"
    assert rate >= 0.5 * budget_rate, f"together only {rate / 1e6:.2f} MB/s of a {budget_rate / 1e6:.2f} MB/s budget"


def test_the_budgets_page_sets_them_and_the_dashboard_lists_what_the_viewer_may_see(make_account, make_user, client):
    from django.test import Client

    account = make_account(name="paged")
    other = make_account(name="elsewhere")
    lead = make_user("page-lead", team=account.team, role="lead")
    member = make_user("page-member", team=account.team, role="member")
    BandwidthBudget.objects.create(scope="account", account=other, max_speed=99)
    BandwidthBudget.objects.create(scope="studio", max_speed=50_000)

    as_lead = Client()
    as_lead.force_login(lead)
    saved = as_lead.post("/budgets/", {"scope": "account", "account": account.pk, "max_speed": 3000}, follow=True)
    assert saved.status_code == 200 and "Budget set: account paged: 3000 KB/s." in saved.content.decode()
    refused = as_lead.post("/budgets/", {"scope": "studio", "max_speed": 1})
    assert refused.status_code == 400 and "studio&#x27;s budget is set by staff" in refused.content.decode()
    as_member = Client()
    as_member.force_login(member)
    not_theirs = as_member.post("/budgets/", {"scope": "account", "account": account.pk, "max_speed": 1})
    assert not_theirs.status_code == 400  # the account is not among those they lead: not a choice
    assert BandwidthBudget.objects.get(account=account).max_speed == 3000

    state = as_member.get("/dashboard/state.json").json()
    assert {(b["label"], b["rate"]) for b in state["budgets"]} == {
        ("the studio", 50_000 * 1024.0),
        ("account paged", 3000 * 1024.0),
    }
    page = as_member.get("/budgets/").content.decode()
    assert "account paged" in page and "elsewhere" not in page


def test_the_workers_page_is_for_staff(make_user):
    from django.test import Client

    from transfers import workers

    staff, member = make_user("workers-staff", staff=True), make_user("workers-member")
    workers.heartbeat("page-probe@host", started=0.0)
    try:
        as_staff, as_member = Client(), Client()
        as_staff.force_login(staff)
        as_member.force_login(member)
        assert as_member.get("/workers/").status_code == 404
        page = as_staff.get("/workers/").content.decode()
        assert "page-probe@host" in page and "sftp" in page
    finally:
        workers.gone("page-probe@host")


def test_each_job_paces_itself_to_its_fair_share_of_a_budget(make_account):
    """Two jobs want one budget: each keeps to half, whatever its streams; when one stops wanting it (its
    mark lapses), the other gets the whole."""
    import time as clock

    account = make_account(name="fair")
    budget_row = BandwidthBudget.objects.create(scope=BandwidthBudget.Scope.ACCOUNT, account=account, max_speed=1000)
    first = TransferJob.objects.create(kind="upload_asset", account=account, status="running")
    second = TransferJob.objects.create(kind="upload_asset", account=account, status="running")
    buckets = [budget.SharedBudgets(None, reserve=lambda key, rate, count: 0.0) for _ in range(2)]
    budget.refresh_for(first, buckets[0])
    budget.refresh_for(second, buckets[1])
    budget.refresh_for(first, buckets[0])  # now both have said so
    assert [b.shared[0].share for b in buckets] == [512_000.0, 512_000.0]
    assert buckets[0].reserve(512_000) == pytest.approx(1.0, abs=0.05), "its half: 512,000 bytes a second"
    from django.conf import settings

    from transfers.locks import _client

    _client(settings.REDIS_URL).zadd(f"{budget.budget_key(budget_row.pk)}:jobs", {str(second.pk): clock.time() - 10})
    budget.refresh_for(first, buckets[0])
    assert buckets[0].shared[0].share == 1_024_000.0, "the other job stopped wanting it: the whole budget"
