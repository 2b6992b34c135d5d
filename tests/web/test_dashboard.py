"""The dashboard page, its state as JSON, and kiosk links: who sees what, made and revoked by leads only."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from transfers import kiosks
from transfers.models import AuditEvent, FarmAccount, Kiosk, Team, TransferJob

pytestmark = pytest.mark.django_db

LINK = re.compile(r'value="(http://testserver/kiosk/#([^"]+))"')


@pytest.fixture
def two_teams(
    make_team: Callable[..., Team], make_account: Callable[..., FarmAccount], make_job: Callable[..., TransferJob]
) -> dict[str, Any]:
    ours, theirs = make_team("ours"), make_team("theirs")
    our_account, their_account = make_account(ours, name="our-farm"), make_account(theirs, name="their-farm")
    now = timezone.now()
    return {
        "ours": ours,
        "theirs": theirs,
        "our_upload": make_job(account=our_account, bytes_total=100, bytes_done=40, bytes_sent=40, started_at=now),
        "our_download": make_job(account=our_account, kind="download", status="queued"),
        "our_failure": make_job(
            account=our_account, status="failed", error="disk full", started_at=now, finished_at=now, bytes_sent=7
        ),
        "old_failure": make_job(account=our_account, status="failed", finished_at=now - timedelta(days=3)),
        "our_done": make_job(account=our_account, status="completed", started_at=now, finished_at=now, bytes_sent=500),
        "their_upload": make_job(account=their_account, bytes_sent=9999, started_at=now),
        "their_failure": make_job(account=their_account, status="failed", finished_at=now),
    }


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _state(response: Any) -> dict[str, Any]:
    if response["Content-Type"].startswith("application/json"):
        return json.loads(response.content)
    match = re.search(r'<script id="dashboard-state" type="application/json">(.*?)</script>', response.content.decode(), re.S)
    assert match, "no state on the page"
    return json.loads(match.group(1))


def _ids(rows: list[dict[str, Any]]) -> list[int]:
    return sorted(row["id"] for row in rows)


def test_a_viewer_sees_their_teams_active_jobs_failures_and_bytes_of_today(make_user, two_teams):
    viewer = make_user(team=two_teams["ours"], role="viewer")

    for url in ("/dashboard/", "/dashboard/state.json"):
        state = _state(_client(viewer).get(url))

        assert _ids(state["active"]) == _ids([{"id": two_teams[k].pk} for k in ("our_upload", "our_download")])
        assert _ids(state["failures"]) == [two_teams["our_failure"].pk]  # not the one of three days ago
        assert state["bytes_today"] == 40 + 7 + 500  # not the other team's 9999
    upload = next(row for row in state["active"] if row["id"] == two_teams["our_upload"].pk)
    download = next(row for row in state["active"] if row["id"] == two_teams["our_download"].pk)
    assert (upload["direction"], download["direction"]) == ("upload", "download")
    assert upload["live"]["percent"] == 40 and upload["url"] == f"/jobs/{upload['id']}/"


def test_staff_see_every_team(make_user, two_teams):
    state = _state(_client(make_user(staff=True)).get("/dashboard/state.json"))

    assert two_teams["their_upload"].pk in _ids(state["active"])
    assert two_teams["their_failure"].pk in _ids(state["failures"])


def test_a_user_of_no_team_sees_an_empty_dashboard(make_user, two_teams):
    state = _state(_client(make_user()).get("/dashboard/"))

    assert (state["active"], state["failures"], state["bytes_today"]) == ([], [], 0)


def test_signed_out_the_page_asks_for_a_login_and_the_state_is_401(two_teams):
    assert Client().get("/dashboard/")["Location"].startswith("/login/")
    assert Client().get("/dashboard/state.json").status_code == 401


def test_the_wall_screen_mode_has_no_navigation_nor_kiosk_links(make_user, two_teams):
    lead = make_user(team=two_teams["ours"], role="lead")

    normal = _client(lead).get("/dashboard/").content.decode()
    wall = _client(lead).get("/dashboard/?kiosk=1").content.decode()

    assert "Make a kiosk link" in normal and 'href="/farm/"' in normal
    assert "Make a kiosk link" not in wall and 'href="/farm/"' not in wall and "Log out" not in wall


# --- kiosk links ----------------------------------------------------------------------------------------


def _make_link(client: Client, team: Team, name: str = "render room wall") -> tuple[str, str]:
    response = client.post("/dashboard/kiosks", {"team": team.pk, "name": name})
    assert response.status_code == 200, response.content
    match = LINK.search(response.content.decode())
    assert match, "the new link is shown"
    return match.group(1), match.group(2)


def _kiosk_state(token: str) -> Any:
    return Client().get("/kiosk/state.json", HTTP_X_KIOSK_TOKEN=token)


def test_a_lead_makes_a_kiosk_link_that_shows_their_team_only_without_login(make_user, two_teams):
    lead = make_user(team=two_teams["ours"], role="lead")
    _, token = _make_link(_client(lead), two_teams["ours"])

    page = Client().get("/kiosk/")
    response = _kiosk_state(token)
    state = _state(response)

    assert page.status_code == 200 and response.status_code == 200
    assert state["title"] == "ours · render room wall"
    assert _ids(state["active"]) == _ids([{"id": two_teams[k].pk} for k in ("our_upload", "our_download")])
    assert _ids(state["failures"]) == [two_teams["our_failure"].pk]
    assert all(row["url"] is None for row in state["active"] + state["failures"])  # no way in from a wall
    html = page.content.decode()
    assert "<form" not in html and "Log out" not in html and 'href="/jobs/' not in html and 'data-kiosk="1"' in html
    assert page["Referrer-Policy"] == "no-referrer"


def test_the_kiosk_token_travels_in_the_fragment_never_in_a_url_the_server_sees(make_user, two_teams):
    lead = make_user(team=two_teams["ours"], role="lead")
    link, token = _make_link(_client(lead), two_teams["ours"])

    assert link == f"http://testserver/kiosk/#{token}"
    assert Client().get(f"/kiosk/{token}/").status_code == 404  # no route takes it in the path
    assert _kiosk_state("").status_code == 404 and Client().get("/kiosk/state.json").status_code == 404


def test_only_the_digest_of_the_token_is_kept_and_the_link_is_not_shown_again(make_user, two_teams):
    lead = make_user(team=two_teams["ours"], role="lead")
    client = _client(lead)
    _, token = _make_link(client, two_teams["ours"])

    kiosk = Kiosk.objects.get()
    assert token not in kiosk.digest and len(kiosk.digest) == 64
    assert token not in client.get("/dashboard/").content.decode()
    audit = AuditEvent.objects.filter(action="kiosk.create").get()
    assert token not in json.dumps([audit.before, audit.after])


def test_a_revoked_or_forged_link_shows_nothing(make_user, two_teams):
    lead = make_user(team=two_teams["ours"], role="lead")
    client = _client(lead)
    _, token = _make_link(client, two_teams["ours"])
    kiosk = Kiosk.objects.get()

    response = client.post(f"/dashboard/kiosks/{kiosk.pk}/revoke")

    assert response.status_code == 302
    assert Kiosk.objects.get().revoked is True
    assert AuditEvent.objects.filter(action="kiosk.revoke", target_id=str(kiosk.pk)).exists()
    for bad in (token, token[:-3] + "abc", "nonsense"):
        response = _kiosk_state(bad)
        assert response.status_code == 404 and "not valid or was revoked" in response.json()["error"]


def test_a_member_or_viewer_may_not_make_a_kiosk_link(make_user, two_teams):
    for role in ("member", "viewer"):
        user = make_user(team=two_teams["ours"], role=role)

        assert "Make a kiosk link" not in _client(user).get("/dashboard/").content.decode()
        assert _client(user).post("/dashboard/kiosks", {"team": two_teams["ours"].pk, "name": "x"}).status_code == 400
    assert not Kiosk.objects.exists()


def test_a_lead_may_not_make_a_link_for_another_team_nor_revoke_one(make_user, two_teams):
    ours_lead = make_user(team=two_teams["ours"], role="lead")
    theirs_lead = make_user(team=two_teams["theirs"], role="lead")
    theirs, _ = kiosks.kiosk_create(team=two_teams["theirs"], name="their wall", user=theirs_lead)

    made = _client(ours_lead).post("/dashboard/kiosks", {"team": two_teams["theirs"].pk, "name": "x"})
    revoked = _client(ours_lead).post(f"/dashboard/kiosks/{theirs.pk}/revoke")

    assert made.status_code == 400 and revoked.status_code == 404
    assert Kiosk.objects.count() == 1 and Kiosk.objects.get().revoked is False
    assert "their wall" not in _client(ours_lead).get("/dashboard/").content.decode()


def test_bad_input_is_a_form_error(make_user, two_teams):
    client = _client(make_user(team=two_teams["ours"], role="lead"))

    for data in ({"team": two_teams["ours"].pk, "name": ""}, {"team": "x", "name": "wall"}, {}):
        response = client.post("/dashboard/kiosks", data)
        assert response.status_code == 400 and "errorlist" in response.content.decode()
    assert client.get("/dashboard/kiosks").status_code == 405
    assert client.get("/dashboard/kiosks/999/revoke").status_code == 405
    assert client.post("/dashboard/kiosks/999/revoke").status_code == 404
