"""Farm accounts edited by their leads: the pages, the API, the service's checks, the audit rows (the key
only ever "set"/"changed"/"cleared"), the connector's "test connection", and the account's default options
reaching a job."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from transfers import accounts
from transfers.farm import connector_for
from transfers.models import AuditEvent, FarmAccount, TransferJob

pytestmark = pytest.mark.django_db

KEY = "secret-access-key-5e1f"
NEW_KEY = "another-access-key-77aa"


@pytest.fixture
def blue(make_team, make_account, farm_root) -> FarmAccount:
    return make_account(make_team("Blue"), name="Blue farm", access_id="id-1", access_key=KEY)


@pytest.fixture
def red(make_team, make_account) -> FarmAccount:
    return make_account(make_team("Red"), name="Red farm", access_key=KEY)


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _form(account: FarmAccount | None = None, **changes: Any) -> dict[str, Any]:
    data = {
        "name": account.name if account else "Green farm",
        "team": account.team_id if account else "",
        "kind": "local",
        "access_id": "id-1",
        "access_key": "",
        "domain": "task.example.com",
        "platform": "2",
        "transfer_lines": "main 10.0.0.5:7300\nbackup farm.example.com:7301",
        "path_map": "D:/ => /mnt/studio/D/",
        "max_speed": "2048",
        "pool_size": "8",
        "upload_num": "",
    }
    data.update(changes)
    return data


# --- pages ----------------------------------------------------------------------------------------


def test_a_lead_creates_an_account_on_the_page_and_the_key_is_only_shown_as_set(make_user, blue):
    lead = make_user("lea", team=blue.team, role="lead")
    client = _client(lead)

    response = client.post("/farm/new", _form(team=blue.team_id, name="Green farm", access_key=KEY))

    account = FarmAccount.objects.get(name="Green farm")
    assert response.status_code == 302 and response["Location"] == f"/farm/{account.pk}/edit"
    assert account.access_key == KEY
    assert account.transfer_lines == [
        {"name": "main", "host": "10.0.0.5", "port": 7300},
        {"name": "backup", "host": "farm.example.com", "port": 7301},
    ]
    assert account.path_map == {"D:/": "/mnt/studio/D/"}
    assert account.upload_options == {"max_speed": 2048, "pool_size": 8}
    page = client.get(f"/farm/{account.pk}/edit").content.decode()
    assert KEY not in page
    assert "Access key: <strong>set</strong>" in page
    audit = AuditEvent.objects.get(action="account.create")
    assert audit.after["access_key"] == "set" and KEY not in json.dumps([audit.before, audit.after])


def test_an_empty_key_keeps_the_stored_one_a_new_one_changes_it_and_clear_removes_it(make_user, blue):
    client = _client(make_user(team=blue.team, role="lead"))

    client.post(f"/farm/{blue.pk}/edit", _form(blue, access_id="id-2"))
    blue.refresh_from_db()
    assert (blue.access_id, blue.access_key) == ("id-2", KEY)
    client.post(f"/farm/{blue.pk}/edit", _form(blue, access_id="id-2", access_key=NEW_KEY))
    blue.refresh_from_db()
    assert blue.access_key == NEW_KEY
    client.post(f"/farm/{blue.pk}/edit", _form(blue, access_id="id-2", clear_key="on"))
    blue.refresh_from_db()
    assert blue.access_key == ""

    changes = [(e.before, e.after) for e in AuditEvent.objects.filter(action="account.change").order_by("created_at", "pk")]
    assert changes[0][0]["access_id"] == "id-1" and changes[0][1]["access_id"] == "id-2"
    assert "access_key" not in changes[0][1]
    assert (changes[1][0]["access_key"], changes[1][1]["access_key"]) == ("set", "changed")
    assert (changes[2][0]["access_key"], changes[2][1]["access_key"]) == ("set", "cleared")
    assert KEY not in json.dumps(changes) and NEW_KEY not in json.dumps(changes)
    assert "Access key: <strong>not set</strong>" in client.get(f"/farm/{blue.pk}/edit").content.decode()


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("transfer_lines", "main 10.0.0.5", "name host:port"),
        ("transfer_lines", "main 10.0.0.5:99999", "port is a whole number"),
        ("transfer_lines", "main bad_host!:7300", "not a host name"),
        ("transfer_lines", "main a:1\nmain b:2", "given twice"),
        ("path_map", "D:/ /mnt/x", "prefix =&gt; target"),
        ("path_map", "D:/ => relative/path", "an absolute POSIX path"),
        ("pool_size", "0", "pool_size"),
        ("max_speed", "-5", "max_speed"),
        ("kind", "deadline", "not one of the available choices"),
        ("name", "Red farm", "exists already"),
    ],
)
def test_bad_input_is_a_form_error_and_nothing_changes(make_user, blue, red, field, value, says):
    client = _client(make_user(team=blue.team, role="lead"))

    response = client.post(f"/farm/{blue.pk}/edit", _form(blue, **{field: value}))

    assert response.status_code == 400
    assert says in response.content.decode()
    assert FarmAccount.objects.get(pk=blue.pk).transfer_lines == []
    assert not AuditEvent.objects.filter(action="account.change").exists()


def test_a_lead_may_not_put_an_account_in_a_team_they_do_not_lead(make_user, blue, red):
    client = _client(make_user(team=blue.team, role="lead"))

    response = client.post("/farm/new", _form(team=red.team_id, name="Sneaky"))

    assert response.status_code == 400  # Red is not a choice
    assert not FarmAccount.objects.filter(name="Sneaky").exists()


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_see_the_list_but_may_not_edit(make_user, blue, role):
    client = _client(make_user(team=blue.team, role=role))

    listed = client.get("/farm/")
    edit = client.get(f"/farm/{blue.pk}/edit")
    post = client.post(f"/farm/{blue.pk}/edit", _form(blue, access_id="hacked"))
    new = client.get("/farm/new")
    check = client.post(f"/farm/{blue.pk}/check")

    assert listed.status_code == 200 and "Blue farm" in listed.content.decode()
    assert f"/farm/{blue.pk}/edit" not in listed.content.decode() and "/farm/new" not in listed.content.decode()
    assert (edit.status_code, post.status_code, new.status_code, check.status_code) == (403, 403, 403, 403)
    assert FarmAccount.objects.get(pk=blue.pk).access_id == "id-1"


def test_another_teams_account_is_not_found(make_user, blue, red):
    client = _client(make_user(team=blue.team, role="lead"))

    pages = [
        client.get(f"/farm/{red.pk}/edit"),
        client.post(f"/farm/{red.pk}/edit", _form(red)),
        client.post(f"/farm/{red.pk}/check"),
    ]

    assert [page.status_code for page in pages] == [404, 404, 404]
    assert "Red farm" not in client.get("/farm/").content.decode()


def test_the_list_offers_edit_and_new_to_a_lead(make_user, blue):
    page = _client(make_user(team=blue.team, role="lead")).get("/farm/").content.decode()

    assert f"/farm/{blue.pk}/edit" in page and "/farm/new" in page
    assert KEY not in page


# --- test connection ------------------------------------------------------------------------------


def test_test_connection_passes_on_a_healthy_local_account(make_user, blue):
    response = _client(make_user(team=blue.team, role="lead")).post(f"/farm/{blue.pk}/check")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Test connection passed" in page and "input area is writable" in page
    assert AuditEvent.objects.get(action="account.check").outcome == "ok"


def test_test_connection_says_which_step_failed(make_user, blue, tmp_path):
    area = connector_for(blue).ensure().area_root("output")
    area.rmdir()
    area.write_text("not a folder")  # a file where the output area should be
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    config = connector_for(blue).area_root("config")
    config.rmdir()
    config.symlink_to(outside)

    response = _client(make_user(team=blue.team, role="lead")).post(f"/farm/{blue.pk}/check")

    page = response.content.decode()
    assert "Test connection failed" in page
    assert "✗ failed — output area is a folder" in page and "is not a folder" in page
    assert "✗ failed — config area is inside the farm root" in page and "outside the farm root" in page
    assert "✓ ok — input area is writable" in page
    audit = AuditEvent.objects.get(action="account.check")
    assert audit.outcome == "failed" and "output area is a folder" in audit.after["failed"]


def test_an_account_without_a_connector_fails_its_check_saying_so(make_user, make_account, blue, without_fox_connector):
    fox = make_account(blue.team, name="Fox", kind="fox")

    steps = accounts.account_check(account=fox, user=make_user(team=blue.team, role="lead"))

    assert [(s.name, s.ok) for s in steps] == [("connector", False)]
    assert "no connector" in steps[0].message


# --- the API --------------------------------------------------------------------------------------


def _api(client: Client, method: str, url: str, body: Any) -> Any:
    return getattr(client, method)(url, json.dumps(body), content_type="application/json")


def test_the_api_creates_with_the_same_checks_and_never_returns_the_key(make_user, blue):
    client = _client(make_user(team=blue.team, role="lead"))
    body = {
        "name": "Api farm",
        "team": blue.team_id,
        "access_key": KEY,
        "transfer_lines": [{"name": "main", "host": "10.0.0.5", "port": 7300}],
        "path_map": {"D:/": "/mnt/d/"},
        "upload_options": {"max_speed": 1024, "is_db": False},
    }

    created = _api(client, "post", "/api/accounts/", body)
    bad = _api(client, "post", "/api/accounts/", {**body, "name": "x", "transfer_lines": [{"name": "a", "host": "h", "port": 0}]})
    bad_options = _api(client, "post", "/api/accounts/", {**body, "name": "y", "upload_options": {"pool_size": 999}})
    bad_kind = _api(client, "post", "/api/accounts/", {**body, "name": "z", "kind": "nope"})

    assert created.status_code == 201, created.content
    assert KEY not in created.content.decode()
    assert created.json()["has_access_key"] is True and created.json()["upload_options"] == {"max_speed": 1024, "is_db": False}
    assert bad.status_code == 400 and "port" in str(bad.json()["error"]["fields"]["transfer_lines"])
    assert bad_options.status_code == 400 and "pool_size" in str(bad_options.json()["error"]["fields"]["upload_options"])
    assert bad_kind.status_code == 400 and "kind" in bad_kind.json()["error"]["fields"]
    assert FarmAccount.objects.get(name="Api farm").access_key == KEY


def test_the_api_clears_a_key_and_audits_it_without_the_value(make_user, blue):
    client = _client(make_user(team=blue.team, role="lead"))

    response = _api(client, "patch", f"/api/accounts/{blue.pk}/", {"clear_access_key": True})

    assert response.status_code == 200 and response.json()["has_access_key"] is False
    audit = AuditEvent.objects.get(action="account.change")
    assert (audit.before, audit.after) == ({"access_key": "set"}, {"access_key": "cleared"})


def test_the_api_check_runs_the_connector_check(make_user, blue, red):
    lead, member = make_user(team=blue.team, role="lead"), make_user(team=blue.team, role="member")

    ok = _client(lead).post(f"/api/accounts/{blue.pk}/check/")
    refused = _client(member).post(f"/api/accounts/{blue.pk}/check/")
    hidden = _client(lead).post(f"/api/accounts/{red.pk}/check/")

    assert ok.status_code == 200 and ok.json()["ok"] is True
    assert "input area is writable" in [step["name"] for step in ok.json()["steps"]]
    assert all(step["ok"] for step in ok.json()["steps"]) and len(ok.json()["steps"]) == 13
    assert (refused.status_code, hidden.status_code) == (403, 404)


# --- default options reach the jobs ---------------------------------------------------------------


def test_the_accounts_default_options_apply_to_a_job_unless_it_gives_its_own(make_user, make_manifest, blue):
    lead = make_user(team=blue.team, role="lead")
    accounts.account_save(user=lead, account=blue, data={"upload_options": {"max_speed": 512, "pool_size": 2}})
    blue.refresh_from_db()
    manifest = make_manifest(blue, files=1)
    from transfers.jobs import job_create

    defaulted = job_create(kind="upload_asset", account=blue, manifest=manifest, user=lead, options={})
    own = job_create(kind="upload_asset", account=blue, manifest=manifest, user=lead, options={"pool_size": 6})

    assert (defaulted.options["max_speed"], defaulted.options["pool_size"]) == (512, 2)
    assert (own.options["max_speed"], own.options["pool_size"]) == (512, 6)
    assert TransferJob.objects.count() == 2
