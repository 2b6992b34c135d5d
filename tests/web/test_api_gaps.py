"""The API's audit trail, notification settings and kiosk links: who sees what, filters and bad input
(400 in the one error shape, never a 500), secrets and links shown once, other users' and teams' rows 404."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from transfers import kiosks, services
from transfers.models import AuditEvent, Kiosk, NotificationDelivery, NotificationSettings
from transfers.notifications import settings_save


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def staff(make_user):
    return make_user("auditor", staff=True)


@pytest.fixture
def lead(team, make_user):
    return make_user("lead", team=team, role="lead")


def _as(api, user):
    api.force_authenticate(user)
    return api


def _error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


# --- the audit ----------------------------------------------------------------------------------------


@pytest.fixture
def trail(team, lead, make_account, make_team):
    account = make_account(team, name="farm")
    other = make_account(make_team("Other"), name="far")
    rows = [
        services.audit_record(actor=lead, action="job.pause", target=account),
        services.audit_record(actor=None, action="job.resume", target=account, outcome="failed"),
        services.audit_record(actor=None, action="account.change", target=other),
    ]
    return account, other, rows


def test_the_audit_is_for_staff_only(api, make_user, team, trail):
    _, _, rows = trail
    for user in (make_user("viewer", team=team, role="viewer"), make_user("boss", team=team, role="lead")):
        _as(api, user)
        _error(api.get("/api/audit/"), 404, "not_found")
        _error(api.get(f"/api/audit/{rows[0].pk}/"), 404, "not_found")
    api.force_authenticate(None)
    assert api.get("/api/audit/").status_code == 401


def test_staff_read_the_trail_newest_first_and_one_row(api, staff, trail):
    _, _, rows = trail
    _as(api, staff)

    body = api.get("/api/audit/").json()
    one = api.get(f"/api/audit/{rows[0].pk}/").json()

    assert [row["id"] for row in body["results"]][:3] == [row.pk for row in reversed(rows)]
    assert one["action"] == "job.pause" and one["actor_name"] == "lead" and one["team"] == rows[0].team_id
    _error(api.get("/api/audit/999999999/"), 404, "not_found")


def test_the_trail_is_read_only(api, staff, trail):
    _, _, rows = trail
    _as(api, staff)
    for method in ("post", "put", "patch", "delete"):
        assert getattr(api, method)(f"/api/audit/{rows[0].pk}/").status_code == 405
    _error(api.post("/api/audit/", {}), 405, "method_not_allowed")


def test_the_pages_filters(api, staff, team, trail):
    account, other, rows = trail
    _as(api, staff)

    def ids(**query):
        response = api.get("/api/audit/", query)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids(action="job.pause") == {rows[0].pk}
    assert ids(action="job.") == {rows[0].pk, rows[1].pk}
    assert ids(actor="lead") == {rows[0].pk}
    assert ids(team=other.team_id, action="account.change") == {rows[2].pk}
    assert ids(target_type="FarmAccount", target_id=str(account.pk)) == {rows[0].pk, rows[1].pk}
    assert ids(outcome="failed") == {rows[1].pk}
    assert ids(action="job.", since="2000-01-01", until="2999-12-31") == {rows[0].pk, rows[1].pk}
    assert ids(action="job.", until="2000-01-01") == set()
    assert ids(request_id="no-such-request") == set()


@pytest.mark.parametrize(
    "query",
    [
        {"team": "abc"},
        {"team": "999999"},
        {"since": "yesterday"},
        {"since": "2026-02-01", "until": "2026-01-01"},
        {"until": "9999-12-31"},
        {"until": "9999-12-31T23:59:30"},
        {"since": "0001-01-01T00:00:10"},
        {"before": "-1"},
        {"before": str(2**64)},
        {"after": "x"},
        {"page_size": "0"},
        {"page_size": "501"},
        {"actor": "x" * 151},
        {"action": "job\x00"},
    ],
)
def test_bad_filter_values_are_a_400_naming_them(api, staff, trail, query):
    _as(api, staff)

    error = _error(api.get("/api/audit/", query), 400, "invalid")

    assert set(error["fields"]) & (set(query) | {"until"})


def test_pages_go_by_id_both_ways(api, staff, trail):
    account, _, _ = trail
    made = [services.audit_record(actor=None, action="job.test", target=account).pk for _ in range(7)]
    _as(api, staff)

    first = api.get("/api/audit/", {"action": "job.test", "page_size": 3}).json()
    second = api.get(first["next"]).json()
    third = api.get(second["next"]).json()
    back = api.get(third["previous"]).json()

    newest = made[::-1]
    assert [row["id"] for row in first["results"]] == newest[:3] and first["previous"] is None
    assert [row["id"] for row in second["results"]] == newest[3:6]
    assert [row["id"] for row in third["results"]] == newest[6:] and third["next"] is None
    assert [row["id"] for row in back["results"]] == newest[3:6]
    assert "action=job.test" in first["next"] and "page_size=3" in first["next"]


# --- notifications ----------------------------------------------------------------------------------------


@pytest.fixture
def ann(make_user, team):
    user = make_user("ann", team=team)
    user.email = "ann@example.com"
    user.save()
    return user


def test_settings_are_the_users_own(api, ann, make_user):
    bob = make_user("bob")
    settings_save(user=bob, email=False, webhook_url="https://bob.example/hook", events=["job_failed"])
    NotificationDelivery.objects.create(user=bob, channel="webhook", event="job_failed", status="sent")
    _as(api, ann)

    mine = api.get("/api/notifications/").json()
    deliveries = api.get("/api/notifications/deliveries/").json()

    assert mine == {"email": False, "webhook_url": "", "events": [], "secret_set": False, "updated_at": mine["updated_at"]}
    assert deliveries["count"] == 0


def test_put_saves_and_a_first_webhook_secret_is_shown_once(api, ann):
    _as(api, ann)
    body = {"email": True, "webhook_url": "https://hooks.example/rvweb", "events": ["job_completed", "task_failed"]}

    saved = api.put("/api/notifications/", body, format="json")
    again = api.put("/api/notifications/", body, format="json")
    read = api.get("/api/notifications/")

    assert saved.status_code == 200 and saved["Cache-Control"] == "no-store"
    secret = saved.json()["webhook_secret"]
    assert secret == NotificationSettings.objects.get(user=ann).webhook_secret
    assert "webhook_secret" not in again.json() and secret not in read.content.decode()
    assert read.json()["secret_set"] is True and read.json()["events"] == ["job_completed", "task_failed"]
    assert secret not in str(list(AuditEvent.objects.values_list("before", "after")))


def test_a_new_secret_is_shown_once_and_replaces_the_old(api, ann):
    _as(api, ann)
    _error(api.post("/api/notifications/secret/"), 400, "invalid")  # no webhook yet
    first = api.put("/api/notifications/", {"email": False, "webhook_url": "http://h.example/x", "events": []}, format="json")

    made = api.post("/api/notifications/secret/")

    secret = made.json()["webhook_secret"]
    assert made.status_code == 200 and made["Cache-Control"] == "no-store"
    assert secret != first.json()["webhook_secret"]
    assert NotificationSettings.objects.get(user=ann).webhook_secret == secret
    assert secret not in api.get("/api/notifications/").content.decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"webhook_url": "ftp://h.example/x"}, "webhook_url"),
        ({"webhook_url": "file:///etc/passwd"}, "webhook_url"),
        ({"webhook_url": "https://user:pw@h.example/x"}, "webhook_url"),
        ({"webhook_url": "https://"}, "webhook_url"),
        ({"webhook_url": "https://h.example/" + "x" * 500}, "webhook_url"),
        ({"events": ["nope"]}, "events"),
        ({"events": "job_completed"}, "events"),
        ({"email": "maybe"}, "email"),
    ],
)
def test_bad_settings_are_a_400_naming_the_field(api, ann, body, field):
    _as(api, ann)
    sent = {"email": False, "webhook_url": "", "events": []} | body

    error = _error(api.put("/api/notifications/", sent, format="json"), 400, "invalid")

    assert field in error["fields"]
    assert not NotificationSettings.objects.filter(user=ann).exclude(webhook_url="").exists()


def test_email_needs_an_address(api, make_user):
    _as(api, make_user("noaddress"))

    error = _error(
        api.put("/api/notifications/", {"email": True, "webhook_url": "", "events": []}, format="json"), 400, "invalid"
    )

    assert "email" in error["fields"]


def test_deliveries_are_paged(api, ann):
    for attempt in range(1, 4):
        NotificationDelivery.objects.create(user=ann, channel="email", event="job_failed", status="retrying", attempt=attempt)
    _as(api, ann)

    page = api.get("/api/notifications/deliveries/", {"page_size": 2}).json()

    assert page["count"] == 3 and [row["attempt"] for row in page["results"]] == [3, 2] and page["next"]
    _error(api.get("/api/notifications/deliveries/", {"page": 9}), 404, "not_found")


# --- kiosk links ------------------------------------------------------------------------------------------


def test_a_lead_makes_a_link_shown_once(api, lead, team):
    _as(api, lead)

    made = api.post("/api/kiosks/", {"team": team.pk, "name": "render room wall"}, format="json")

    assert made.status_code == 201 and made["Cache-Control"] == "no-store"
    body = made.json()
    assert body["link"].endswith("/kiosk/#" + body["token"]) and body["team_name"] == team.name
    assert kiosks.kiosk_from_token(body["token"]).pk == body["id"]
    listed = api.get("/api/kiosks/")
    assert listed.json()["count"] == 1 and body["token"] not in listed.content.decode()
    assert body["token"] not in api.get(f"/api/kiosks/{body['id']}/").content.decode()


def test_revoking_a_link_turns_it_off(api, lead, team):
    kiosk, token = kiosks.kiosk_create(team=team, name="wall", user=lead)
    _as(api, lead)

    revoked = api.post(f"/api/kiosks/{kiosk.pk}/revoke/")

    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert kiosks.kiosk_from_token(token) is None
    assert [row["id"] for row in api.get("/api/kiosks/", {"revoked": "false"}).json()["results"]] == []


def test_a_member_is_refused_and_sees_no_links(api, lead, team, make_user):
    kiosks.kiosk_create(team=team, name="wall", user=lead)
    _as(api, make_user("mem", team=team, role="member"))

    _error(api.post("/api/kiosks/", {"team": team.pk, "name": "mine"}, format="json"), 403, "permission_denied")
    assert api.get("/api/kiosks/").json()["count"] == 0
    assert Kiosk.objects.count() == 1


def test_another_teams_link_is_a_404(api, lead, make_team, make_user):
    blue = make_team("Blue")
    kiosk, _ = kiosks.kiosk_create(team=blue, name="wall", user=make_user("blue-lead", team=blue, role="lead"))
    _as(api, lead)

    _error(api.get(f"/api/kiosks/{kiosk.pk}/"), 404, "not_found")
    _error(api.post(f"/api/kiosks/{kiosk.pk}/revoke/"), 404, "not_found")
    error = _error(api.post("/api/kiosks/", {"team": blue.pk, "name": "x"}, format="json"), 400, "invalid")
    assert "team" in error["fields"]
    assert not Kiosk.objects.get(pk=kiosk.pk).revoked


@pytest.mark.parametrize(
    "body", [{}, {"team": "abc", "name": "x"}, {"team": None, "name": "x"}, {"team": 1, "name": ""}, {"name": "x" * 101}]
)
def test_bad_kiosk_bodies_are_a_400(api, lead, team, body):
    _as(api, lead)

    _error(api.post("/api/kiosks/", body, format="json"), 400, "invalid")


def test_bad_kiosk_filters_are_a_400(api, lead):
    _as(api, lead)

    _error(api.get("/api/kiosks/", {"team": "abc"}), 400, "invalid")


def test_dates_at_the_ends_of_time_are_a_400_on_the_page_too(client, staff):
    client.force_login(staff)
    for query in ({"until": "9999-12-31"}, {"since": "0001-01-01T00:00:10"}):
        assert client.get(reverse("audit"), query).status_code == 400
        assert client.get(reverse("audit-export"), query).status_code == 400
