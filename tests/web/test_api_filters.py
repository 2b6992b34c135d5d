"""Filters and pages of the API's lists: they narrow what selectors give, and a bad value is a 400."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from transfers.models import FarmAccount, Manifest, TransferJob


@pytest.fixture
def lead(team, make_user):
    return make_user("lead", team=team, role="lead")


@pytest.fixture
def api(client, lead):
    client.force_login(lead)
    return client


@pytest.fixture
def two_accounts(team, make_account):
    return make_account(team, name="alpha"), make_account(team, name="beta")


def _fields(response):
    """The parameters a 400 names."""
    return response.json()["error"]["fields"]


def _ids(response):
    assert response.status_code == 200, response.content
    return sorted(row["id"] for row in response.json()["results"])


def test_jobs_filter_by_account_kind_and_status(api, two_accounts, make_job):
    alpha, beta = two_accounts
    running = make_job(account=alpha, status="running", kind="download")
    paused = make_job(account=alpha, status="paused", kind="upload_asset")
    other = make_job(account=beta, status="running", kind="download")

    assert _ids(api.get(f"/api/jobs/?account={alpha.pk}")) == sorted([running.pk, paused.pk])
    assert _ids(api.get("/api/jobs/?kind=download")) == sorted([running.pk, other.pk])
    assert _ids(api.get("/api/jobs/?status=running&status=paused&account=" + str(alpha.pk))) == sorted([running.pk, paused.pk])
    assert _ids(api.get(f"/api/jobs/?status=paused&account={beta.pk}")) == []


def test_jobs_filter_by_team(api, lead, team, make_team, make_account, make_job, make_user):
    second = make_team("second")
    lead.memberships.create(team=second, role="viewer")
    mine = make_job(account=make_account(team))
    theirs = make_job(account=make_account(second))

    assert _ids(api.get(f"/api/jobs/?team={team.pk}")) == [mine.pk]
    assert _ids(api.get(f"/api/jobs/?team={second.pk}")) == [theirs.pk]


def test_jobs_filter_by_creation_dates_both_days_included(api, two_accounts, make_job):
    old = make_job(account=two_accounts[0])
    TransferJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    new = make_job(account=two_accounts[0])
    today = timezone.now().date().isoformat()
    long_ago = (timezone.now() - timedelta(days=10)).date().isoformat()

    assert _ids(api.get(f"/api/jobs/?created_after={today}")) == [new.pk]
    assert _ids(api.get(f"/api/jobs/?created_before={long_ago}")) == [old.pk]
    assert _ids(api.get(f"/api/jobs/?created_after={long_ago}&created_before={today}")) == sorted([old.pk, new.pk])


def test_manifests_filter_by_account_state_and_name(api, two_accounts, make_manifest):
    shots = make_manifest(two_accounts[0], name="Shots 010")
    props = make_manifest(two_accounts[1], name="props")
    Manifest.objects.filter(pk=props.pk).update(state="refused")

    assert _ids(api.get("/api/manifests/?name=SHOTS")) == [shots.pk]
    assert _ids(api.get(f"/api/manifests/?account={two_accounts[1].pk}")) == [props.pk]
    assert _ids(api.get("/api/manifests/?state=ready")) == [shots.pk]


def test_accounts_filter_by_team_and_kind(api, two_accounts, team):
    FarmAccount.objects.filter(pk=two_accounts[1].pk).update(kind="fox")

    assert _ids(api.get("/api/accounts/?kind=fox")) == [two_accounts[1].pk]
    assert _ids(api.get(f"/api/accounts/?team={team.pk}&kind=local")) == [two_accounts[0].pk]


@pytest.mark.parametrize(
    "query",
    [
        "team=abc",
        "team=1.5",
        "account=-1",
        "account=99999999999999999999999999",
        "kind=teleport",
        "status=RUNNING",
        "created_after=yesterday",
        "created_before=2026-13-40",
        "created_after=99999-01-01",
    ],
)
def test_a_bad_job_filter_is_a_400_naming_it(api, two_accounts, query):
    response = api.get(f"/api/jobs/?{query}")

    assert response.status_code == 400
    name = query.partition("=")[0]
    assert name in _fields(response) or name.rpartition("_")[0] in _fields(response)


def test_a_manifest_name_with_a_nul_is_a_400(api, two_accounts):
    assert api.get("/api/manifests/?name=a%00b").status_code == 400


def test_filtering_by_another_teams_account_is_refused_like_an_unknown_one(api, make_account, make_job):
    hidden = make_account(name="hidden")  # its own team, not the lead's
    make_job(account=hidden)

    response = api.get(f"/api/jobs/?account={hidden.pk}")

    assert response.status_code == 400
    assert "account" in _fields(response)


def test_filters_never_widen_what_the_user_sees(api, make_account, make_job):
    make_job(account=make_account(name="hidden"), kind="download")

    assert _ids(api.get("/api/jobs/?kind=download")) == []


def test_lists_come_in_pages_of_50(api, two_accounts):
    TransferJob.objects.bulk_create(TransferJob(account=two_accounts[0]) for _ in range(120))

    first = api.get("/api/jobs/").json()
    third = api.get("/api/jobs/?page=3").json()

    assert (first["count"], len(first["results"]), len(third["results"])) == (120, 50, 20)
    assert "page=2" in first["next"]


def test_page_size_is_capped_at_500(api, two_accounts):
    TransferJob.objects.bulk_create(TransferJob(account=two_accounts[0]) for _ in range(510))

    assert len(api.get("/api/jobs/?page_size=100000").json()["results"]) == 500
    assert len(api.get("/api/jobs/?page_size=7").json()["results"]) == 7


@pytest.mark.parametrize("page", ["abc", "0", "999", "99999999999999999999999"])
def test_a_page_out_of_range_is_a_404_not_a_500(api, two_accounts, page):
    response = api.get(f"/api/jobs/?page={page}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
