"""The job pages of issue 8: the new-job form for every kind, the transfers list's filters and live rows,
the per-file table and the speed samples — including bad input (a message, never a 500), another
team's jobs (never listed, 404) and a viewer (no form)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from transfers import kinds, samples, tasks
from transfers.models import JobSample, TransferItem, TransferJob

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def not_enqueued(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks.run_job, "delay", lambda job_id: None)


@pytest.fixture
def account(team, make_account, farm_root) -> Any:
    return make_account(team, name="farm")


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _items(job: TransferJob, states: list[str]) -> None:
    TransferItem.objects.bulk_create(
        TransferItem(job=job, number=n, local=f"/a/f{n:04d}.exr", server=f"/A/f{n:04d}.exr", size=n, state=state)
        for n, state in enumerate(states, start=1)
    )


# --- the new-job form ----------------------------------------------------------------------------


def test_the_form_offers_every_registered_kind_and_that_kinds_options_with_defaults_and_help(team, make_user, account):
    lead = make_user("lead", team=team, role="lead")

    page = _client(lead).get("/jobs/new?kind=auto_download").content.decode()

    for name in kinds.names():
        assert f'value="{name}"' in page
    for option in ("task_id_list", "local_path", "sleep_time", "conflict", "max_speed", "pool_size", "is_test_stop"):
        assert f'name="{option}"' in page, option
    assert 'name="sleep_time" value="10.0"' in page  # the struct's default
    assert "seconds between listings" in page  # the struct's description
    assert 'name="is_db"' not in page  # another kind's option


def test_a_kind_with_a_manifest_asks_for_a_ready_manifest(team, make_user, account, make_manifest):
    lead = make_user("lead", team=team, role="lead")
    manifest = make_manifest(account, files=2)

    page = _client(lead).get("/jobs/new?kind=upload_asset").content.decode()

    assert 'name="manifest"' in page and f'value="{manifest.pk}"' in page
    assert 'name="account"' not in page and 'name="is_db"' in page


def test_a_member_starts_an_upload_from_the_form(team, make_user, account, make_manifest):
    member = make_user("member", team=team, role="member")
    manifest = make_manifest(account, files=2)

    response = _client(member).post(
        "/jobs/new?kind=upload_asset", {"kind": "upload_asset", "manifest": manifest.pk, "pool_size": "2", "max_speed": ""}
    )

    job = TransferJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert (job.kind, job.manifest, job.options["pool_size"], job.options["max_speed"]) == ("upload_asset", manifest, 2, None)
    assert job.options["is_db"] is False  # an unchecked box is false, as a form says


def test_a_download_from_the_form_reads_lists_and_literals(team, make_user, account, make_farm_task, allowed_dir):
    lead = make_user("lead", team=team, role="lead")
    task = make_farm_task(account, task_id=4242, status=25)
    body = {
        "kind": "download",
        "account": account.pk,
        "task_id_list": f"{task.task_id}",
        "local_path": str(allowed_dir / "out"),
        "conflict": "keep_both",
        "network_mode": "2",
        "pool_size": "4",
        "upload_num": "3",
        "download_filename_format": "false",
    }

    response = _client(lead).post("/jobs/new?kind=download", body)

    assert response.status_code == 302, response.content.decode()[:2000]
    job = TransferJob.objects.get()
    assert job.options["task_id_list"] == [4242] and job.options["conflict"] == "keep_both"
    assert (job.options["network_mode"], job.options["download_filename_format"]) == (2, "false")


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"task_id_list": "12 x"}, "task_id_list", "is not a number"),
        ({"task_id_list": "999999"}, "task_id_list", "no task 999999"),
        ({"task_id_list": "", "local_path": ""}, None, "give task_id_list or server_path"),
        ({"task_id_list": "4242", "local_path": "/etc"}, "local_path", "allowed"),
        ({"task_id_list": "4242", "pool_size": "0"}, "pool_size", "greater than or equal to 1"),
        ({"task_id_list": "4242", "conflict": "explode"}, "conflict", "Select a valid choice"),
    ],
)
def test_bad_options_are_form_errors_never_a_job(team, make_user, account, make_farm_task, fields, field, message):
    lead = make_user("lead", team=team, role="lead")
    make_farm_task(account, task_id=4242, status=25)

    response = _client(lead).post("/jobs/new?kind=download", {"kind": "download", "account": account.pk, **fields})

    assert response.status_code == 200
    assert message in response.content.decode()
    errors = response.context["form"].errors
    assert field in errors if field else "__all__" in errors
    assert not TransferJob.objects.exists()


def test_the_kinds_own_refusal_lands_on_the_option_it_names(team, make_user, account, allowed_dir):
    lead = make_user("lead", team=team, role="lead")

    response = _client(lead).post(
        "/jobs/new?kind=upload_config",
        {"kind": "upload_config", "account": account.pk, "task_id": "7", "config_file_list": str(allowed_dir / "nope.json")},
    )

    assert response.status_code == 200
    assert "config_file_list" in response.context["form"].errors, response.context["form"].errors
    assert not TransferJob.objects.exists()


def test_an_unknown_kind_shows_the_first_kind_not_a_500(team, make_user, account):
    lead = make_user("lead", team=team, role="lead")

    response = _client(lead).get("/jobs/new?kind=teleport")

    assert response.status_code == 200 and response.context["form"].job_kind.name == kinds.names()[0]


def test_a_viewer_gets_no_form_and_no_new_job_button(team, make_user, account):
    viewer = make_user("viewer", team=team, role="viewer")
    client = _client(viewer)

    assert client.get("/jobs/new").status_code == 403
    assert client.post("/jobs/new", {"kind": "download", "account": account.pk, "task_id_list": "1"}).status_code == 403
    assert 'href="/jobs/new"' not in client.get("/jobs/").content.decode()
    assert not TransferJob.objects.exists()


def test_the_form_offers_only_accounts_where_the_user_starts_jobs(team, make_team, make_user, make_account, account):
    other = make_team("Other")
    theirs = make_account(other, name="theirs")
    watched = make_account(make_team("Watched"), name="watched")
    member = make_user("member", team=team, role="member")
    watched.team.memberships.create(user=member, role="viewer")
    client = _client(member)

    page = client.get("/jobs/new?kind=download").content.decode()
    accounts = page.split('name="account"')[1].split("</select>")[0]

    assert f'value="{account.pk}"' in accounts
    assert f'value="{theirs.pk}"' not in accounts and f'value="{watched.pk}"' not in accounts
    response = client.post("/jobs/new?kind=download", {"kind": "download", "account": theirs.pk, "task_id_list": "1"})
    assert "account" in response.context["form"].errors
    assert not TransferJob.objects.exists()


# --- the transfers list ------------------------------------------------------------------------


def test_the_list_never_shows_another_teams_jobs(team, make_team, make_user, make_account, make_job, account):
    mine = make_job(account=account)
    theirs = make_job(account=make_account(make_team("Other")))
    viewer = make_user("viewer", team=team, role="viewer")

    client = _client(viewer)
    page = client.get("/jobs/").content.decode()
    rows = client.get("/jobs/?rows=1").content.decode()

    assert f'href="/jobs/{mine.pk}/"' in page and f'href="/jobs/{mine.pk}/"' in rows
    assert f'href="/jobs/{theirs.pk}/"' not in page and f'href="/jobs/{theirs.pk}/"' not in rows
    assert client.get(f"/jobs/{theirs.pk}/items").status_code == 404


def test_the_list_filters_by_team_account_kind_status_and_date(team, make_team, make_user, make_account, make_job, account):
    second = make_account(team, name="second")
    other_team = make_team("Other")
    elsewhere = make_account(other_team, name="elsewhere")
    staff = make_user("boss", staff=True)
    running = make_job(account=account, kind="upload_asset")
    done = make_job(account=second, kind="download", status="completed")
    old = make_job(account=elsewhere, kind="download", status="failed")
    TransferJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=10))
    client = _client(staff)

    def listed(query: str) -> set[int]:
        response = client.get(f"/jobs/?rows=1&{query}")
        assert response.status_code == 200
        return {job.pk for job in response.context["jobs"]}

    assert listed("") == {running.pk, done.pk, old.pk}
    assert listed(f"team={team.pk}") == {running.pk, done.pk}
    assert listed(f"account={second.pk}") == {done.pk}
    assert listed("kind=download") == {done.pk, old.pk}
    assert listed("status=running") == {running.pk}
    since = (timezone.now() - dt.timedelta(days=2)).date().isoformat()
    assert listed(f"since={since}") == {running.pk, done.pk}
    until = (timezone.now() - dt.timedelta(days=5)).date().isoformat()
    assert listed(f"until={until}") == {old.pk}
    assert listed(f"team={other_team.pk}&kind=download&status=failed") == {old.pk}


@pytest.mark.parametrize(
    "query",
    [
        "team=abc",
        "team=999999",
        "account=-1",
        "kind=teleport",
        "status=exploded",
        "since=yesterday",
        "until=9999-12-31",
        "since=0001-01-01",
        "before=x",
        "before=99999999999999999999999",
        "team=1%00",
    ],
)
def test_bad_filters_are_ignored_with_a_message(team, make_user, make_job, account, query):
    job = make_job(account=account)
    lead = make_user("lead", team=team, role="lead")

    response = _client(lead).get(f"/jobs/?{query}")

    assert response.status_code == 200
    assert 'class="message warning"' in response.content.decode()
    assert "ignored" in response.content.decode() or "newest" in response.content.decode()
    assert [j.pk for j in response.context["jobs"]] == [job.pk]


def test_a_filter_naming_another_teams_account_is_ignored_not_obeyed(team, make_team, make_user, make_account, make_job, account):
    theirs = make_account(make_team("Other"), name="theirs")
    make_job(account=theirs)
    mine = make_job(account=account)
    lead = make_user("lead", team=team, role="lead")

    response = _client(lead).get(f"/jobs/?account={theirs.pk}")

    assert [j.pk for j in response.context["jobs"]] == [mine.pk]
    assert "is not one of yours" in response.content.decode()


def test_the_list_pages_by_job_id_newest_first(team, make_user, make_job, account, monkeypatch):
    from transfers import job_filters

    monkeypatch.setattr(job_filters, "JOBS_PER_PAGE", 2)
    jobs = [make_job(account=account) for _ in range(5)]
    lead = make_user("lead", team=team, role="lead")
    client = _client(lead)

    first = client.get("/jobs/")
    assert [j.pk for j in first.context["jobs"]] == [jobs[4].pk, jobs[3].pk]
    assert first.context["older"] == jobs[3].pk
    second = client.get(f"/jobs/?before={jobs[3].pk}")
    assert [j.pk for j in second.context["jobs"]] == [jobs[2].pk, jobs[1].pk]
    last = client.get(f"/jobs/?before={jobs[1].pk}")
    assert [j.pk for j in last.context["jobs"]] == [jobs[0].pk] and last.context["older"] is None


def test_the_rows_show_a_running_jobs_latest_speed(team, make_user, make_job, account):
    job = make_job(account=account, files_total=10, files_done=5)
    JobSample.objects.create(job=job, at=time.time() - 60, speed=1.0)
    JobSample.objects.create(job=job, at=time.time(), speed=3 * 1024 * 1024)
    lead = make_user("lead", team=team, role="lead")

    rows = _client(lead).get("/jobs/?rows=1").content.decode()

    assert "3.0\xa0MB/s" in rows and "5/10" in rows and "<html" not in rows


# --- the per-file table ------------------------------------------------------------------------


def test_the_file_table_pages_by_number_and_filters_by_state(team, make_user, make_job, account, monkeypatch):
    from transfers import job_filters

    monkeypatch.setattr(job_filters, "ITEMS_PER_PAGE", 2)
    job = make_job(account=account)
    _items(job, ["done", "failed", "pending", "failed", "skipped", "failed"])
    client = _client(make_user("viewer", team=team, role="viewer"))

    page = client.get(f"/jobs/{job.pk}/items").json()
    assert [i["number"] for i in page["items"]] == [1, 2] and page["next"] == 2
    page = client.get(f"/jobs/{job.pk}/items?after=2").json()
    assert [i["number"] for i in page["items"]] == [3, 4]
    failed = client.get(f"/jobs/{job.pk}/items?state=failed").json()
    assert [i["number"] for i in failed["items"]] == [2, 4] and failed["next"] == 4
    failed = client.get(f"/jobs/{job.pk}/items?state=failed&after=4").json()
    assert [i["number"] for i in failed["items"]] == [6] and failed["next"] is None
    for state, numbers in (("active", [3]), ("done", [1]), ("skipped", [5])):
        assert [i["number"] for i in client.get(f"/jobs/{job.pk}/items?state={state}").json()["items"]] == numbers


def test_the_file_table_searches_paths(team, make_user, make_job, account):
    job = make_job(account=account)
    _items(job, ["done"] * 12)
    client = _client(make_user("viewer", team=team, role="viewer"))

    found = client.get(f"/jobs/{job.pk}/items?q=f0011").json()["items"]

    assert [i["number"] for i in found] == [11] and found[0]["local"] == "/a/f0011.exr"


@pytest.mark.parametrize("query", ["state=broken", "after=x", "after=-3", "q=" + "x" * 201])
def test_bad_file_table_parameters_are_a_400_naming_them(team, make_user, make_job, account, query):
    job = make_job(account=account)
    response = _client(make_user("viewer", team=team, role="viewer")).get(f"/jobs/{job.pk}/items?{query}")

    assert response.status_code == 400
    assert response.json()["error"].split(":")[0] in query


def test_the_job_page_has_the_chart_samples_and_the_file_filters(team, make_user, make_job, account):
    job = make_job(account=account)
    JobSample.objects.create(job=job, at=time.time(), speed=2048.0, bytes_done=10)
    response = _client(make_user("viewer", team=team, role="viewer")).get(f"/jobs/{job.pk}/")

    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="job-samples"' in page and "2048.0" in page
    assert "vendor/uplot/uPlot.iife.min.js" in page and "//cdn" not in page
    for value in ("all", "failed", "active", "done", "skipped"):
        assert f'<option value="{value}">' in page


# --- the speed samples -------------------------------------------------------------------------


def _progress(job: TransferJob, speed: float, at: float) -> Any:
    return {"type": "job.progress", "job": job.pk, "speed": speed, "figures_at": at, "bytes_done": 1}


def test_the_sampler_writes_at_most_one_sample_per_interval(make_job, account):
    job = make_job(account=account)
    now = [100.0]
    sampler = samples.Sampler(job.pk, clock=lambda: now[0])

    assert sampler.offer(_progress(job, 10, 1000.0))
    now[0] += 1
    assert not sampler.offer(_progress(job, 20, 1001.0))
    now[0] += 1.5
    assert sampler.offer(_progress(job, 30, 1002.5))
    assert [speed for _, speed in samples.samples_of(job.pk)] == [10.0, 30.0]


def test_a_jobs_samples_are_bounded_by_thinning_and_deleted_with_it(make_job, account, monkeypatch):
    monkeypatch.setattr(samples, "MAX_SAMPLES", 10)
    job = make_job(account=account)
    now = [0.0]
    sampler = samples.Sampler(job.pk, clock=lambda: now[0])

    for second in range(40):
        now[0] = second * 100.0
        sampler.offer(_progress(job, second, 1000.0 + second))

    kept = samples.samples_of(job.pk)
    assert len(kept) < 10
    assert kept[0][0] == 1000.0 and kept[-1][0] > 1030.0  # the whole history, coarser
    job.delete()
    assert not JobSample.objects.exists()
