"""The audit page and its CSV export: staff only, every filter (and bad values: 400, never 500), keyset
pages, the readable before/after, spreadsheet-formula-safe cells; and the trail itself: logins, failed
logins, secrets redacted, the team of each row, and no way to change a row through the admin."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.urls import reverse

from transfers import audit, services
from transfers.models import AuditEvent, Membership

pytestmark = pytest.mark.django_db

REQUEST_ID = "req-audit-page-0123456789"


@pytest.fixture
def staff_client(client, make_user):
    client.force_login(make_user("auditor", staff=True))
    return client


@pytest.fixture
def blue_and_red(make_team, make_user, make_account, make_job):
    """Two teams, each with a lead, an account and a job; a pause of Blue's job recorded with a request id."""
    blue, red = make_team("Blue"), make_team("Red")
    blue_lead, red_lead = make_user("bluelead", team=blue, role="lead"), make_user("redlead", team=red, role="lead")
    blue_job = make_job(account=make_account(blue), created_by=blue_lead)
    red_job = make_job(account=make_account(red), created_by=red_lead)
    return blue, red, blue_lead, red_lead, blue_job, red_job


def _texts(response) -> str:
    return response.content.decode()


def _page_events(response) -> list[AuditEvent]:
    return [event for event, _, _ in response.context["rows"]]


def _csv(response) -> list[list[str]]:
    """The streamed body, read as daphne reads it (an async iterator: one batch at a time)."""

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return list(csv.reader(io.StringIO(async_to_sync(read)().decode())))


# --- who may see it --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["lead", "member", "viewer"])
def test_non_staff_get_404_for_the_page_and_the_export(client, make_team, make_user, role):
    client.force_login(make_user("someone", team=make_team(), role=role))

    assert client.get(reverse("audit")).status_code == 404
    assert client.get(reverse("audit-export")).status_code == 404


def test_anonymous_is_sent_to_log_in(client):
    response = client.get(reverse("audit"))

    assert response.status_code == 302 and "/login/" in response["Location"]


def test_staff_see_every_teams_rows_with_actor_ip_request_and_diff(staff_client, blue_and_red):
    blue, red, blue_lead, red_lead, blue_job, red_job = blue_and_red
    services.job_pause(job=blue_job, user=blue_lead)
    services.job_pause(job=red_job, user=red_lead)

    response = staff_client.get(reverse("audit"), {"action": "job.pause"}, HTTP_X_REQUEST_ID=REQUEST_ID)

    assert response.status_code == 200
    events = _page_events(response)
    assert {(e.actor_name, e.team_id) for e in events} == {("bluelead", blue.pk), ("redlead", red.pk)}
    text = _texts(response)
    assert "running" in text and "paused" in text and "<del>" in text  # the status, before → after
    assert "Blue" in text and "Red" in text


def test_a_row_shows_its_ip_and_request_id(rf, staff_client, blue_and_red):
    _, _, blue_lead, _, blue_job, _ = blue_and_red
    request = rf.post("/", REMOTE_ADDR="10.1.2.3")
    request.request_id = REQUEST_ID
    services.job_set_max_speed(job=blue_job, max_speed=500, user=blue_lead, request=request)

    response = staff_client.get(reverse("audit"), {"request_id": REQUEST_ID})

    [event] = _page_events(response)
    assert (event.action, event.remote_addr) == ("job.max_speed", "10.1.2.3")
    assert "10.1.2.3" in _texts(response) and REQUEST_ID in _texts(response)


# --- filters ------------------------------------------------------------------------------------


def test_filters_by_actor_team_action_family_target_and_outcome(staff_client, blue_and_red):
    _, red, blue_lead, red_lead, blue_job, red_job = blue_and_red
    services.job_pause(job=blue_job, user=blue_lead)
    services.job_pause(job=red_job, user=red_lead)
    services.job_cancel(job=red_job, user=red_lead)  # paused: finished at once (job.finish, cancelled)

    def actions(**filters: object) -> set[str]:
        response = staff_client.get(reverse("audit"), filters)
        assert response.status_code == 200, response.content
        return {event.action for event in _page_events(response)}

    assert actions(actor="bluelead", action="job.") == {"job.pause"}
    assert actions(team=red.pk, action="job.") == {"job.pause", "job.cancel", "job.finish"}
    assert actions(action="job.cancel") == {"job.cancel"}
    assert actions(action="job") == set()  # exact unless it ends in "."
    assert actions(target_type="TransferJob", target_id=str(blue_job.pk), action="job.") == {"job.pause"}
    assert actions(outcome="cancelled") == {"job.finish"}
    assert actions(actor="nobody") == set()


def test_a_date_range_keeps_the_rows_inside_it(staff_client, blue_and_red):
    *_, blue_job, _ = blue_and_red
    services.audit_record(actor=None, action="job.test", target=blue_job)
    today = dt.datetime.now(dt.UTC).date()

    def found(since: str, until: str) -> int:
        response = staff_client.get(reverse("audit"), {"action": "job.test", "since": since, "until": until})
        assert response.status_code == 200, response.content
        return len(_page_events(response))

    assert found(str(today), str(today)) == 1  # a bare "until" day counts to its end
    assert found(str(today - dt.timedelta(days=3)), str(today - dt.timedelta(days=1))) == 0
    assert found(str(today + dt.timedelta(days=1)), "") == 0
    assert found("", f"{today}T00:00") == 0


@pytest.mark.parametrize(
    "filters",
    [
        {"team": "abc"},
        {"team": "999999"},
        {"since": "yesterday"},
        {"until": "2026-13-45"},
        {"since": "2026-05-02", "until": "2026-05-01"},
        {"before": "-1"},
        {"before": "x"},
        {"after": "99999999999999999999999"},
        {"action": "a" * 61},
        {"request_id": "r" * 65},
    ],
)
def test_bad_filter_values_are_a_400_with_the_reason_never_a_500(staff_client, filters):
    page = staff_client.get(reverse("audit"), filters)
    export = staff_client.get(reverse("audit-export"), filters)

    assert page.status_code == 400 and "could not be read" in _texts(page)
    assert export.status_code == 400 and export.content.startswith(b"Bad filter: ")


def test_odd_but_valid_values_are_just_filters(staff_client):
    response = staff_client.get(reverse("audit"), {"actor": "'; DROP TABLE x; --", "target_id": "%_\\", "action": "*"})

    assert response.status_code == 200


def test_pages_go_older_and_back_newer_by_id(staff_client, blue_and_red, monkeypatch):
    *_, blue_job, _ = blue_and_red
    made = [services.audit_record(actor=None, action="job.test", target=blue_job).pk for _ in range(7)]
    monkeypatch.setattr(audit, "PAGE_SIZE", 3)

    first = staff_client.get(reverse("audit"), {"action": "job.test"})
    assert [e.pk for e in _page_events(first)] == made[::-1][:3]
    assert first.context["page"].newer is None
    older = first.context["page"].older
    second = staff_client.get(reverse("audit"), {"action": "job.test", "before": older})
    assert [e.pk for e in _page_events(second)] == made[::-1][3:6]
    third = staff_client.get(reverse("audit"), {"action": "job.test", "before": second.context["page"].older})
    assert [e.pk for e in _page_events(third)] == made[:1]
    assert third.context["page"].older is None
    back = staff_client.get(reverse("audit"), {"action": "job.test", "after": third.context["page"].newer})
    assert [e.pk for e in _page_events(back)] == made[::-1][3:6]
    assert "action=job.test" in _texts(second) and "before=" in _texts(second)


# --- export ------------------------------------------------------------------------------------


def test_the_export_streams_the_filtered_rows_as_csv(staff_client, blue_and_red):
    blue, _, blue_lead, red_lead, blue_job, red_job = blue_and_red
    services.job_pause(job=blue_job, user=blue_lead)
    services.job_pause(job=red_job, user=red_lead)

    response = staff_client.get(reverse("audit-export"), {"action": "job.pause", "team": blue.pk})

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment;" in response["Content-Disposition"]
    header, *rows = _csv(response)
    assert header == audit.CSV_HEADER
    assert [(r[2], r[5], r[6], r[7], r[8]) for r in rows] == [("bluelead", "Blue", "job.pause", "TransferJob", str(blue_job.pk))]
    assert '"status": "running"' in rows[0][12] and '"status": "paused"' in rows[0][13]


def test_the_export_reads_the_table_in_bounded_batches(blue_and_red, django_assert_max_num_queries):
    *_, blue_job, _ = blue_and_red
    for _ in range(25):
        services.audit_record(actor=None, action="job.test", target=blue_job)
    events = AuditEvent.objects.filter(action="job.test")

    with django_assert_max_num_queries(6):  # 25 rows, 7 a batch: 4 batches and the empty one
        chunks = list(audit.csv_batches(events, {}, batch=7))

    assert len(chunks) == 1 + 4
    assert sum(len(list(csv.reader(io.StringIO(chunk)))) for chunk in chunks[1:]) == 25


@pytest.mark.parametrize(
    "value, shown",
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_get_a_leading_quote(value, shown):
    assert audit.csv_safe(value) == shown


def test_a_username_made_to_look_like_a_formula_is_exported_as_text(staff_client, make_team, make_user):
    evil = make_user("=cmd|' /C calc'!A0", team=make_team("=1+2"), role="viewer")
    services.audit_record(actor=evil, action="@job.test", target=evil.memberships.get())

    response = staff_client.get(reverse("audit-export"), {"action": "@job.test"})

    [_, row] = _csv(response)
    assert row[2] == "'=cmd|' /C calc'!A0" and row[5] == "'=1+2" and row[6] == "'@job.test"
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)


# --- the trail ----------------------------------------------------------------------------------


def test_a_login_a_logout_and_a_failed_login_are_recorded_without_the_password(client, make_user):
    user = make_user("artist", password="pw-artist-4711")

    client.post("/login/", {"username": "artist", "password": "wrong-guess-4711"}, HTTP_X_REQUEST_ID=REQUEST_ID)
    client.post("/login/", {"username": "ghost", "password": "wrong-guess-4711"})
    client.post("/login/", {"username": "artist", "password": "pw-artist-4711"})
    client.post("/logout/")

    failed = AuditEvent.objects.filter(action="auth.login_failed").order_by("id")
    assert [(e.actor_id, e.actor_name, e.target_id, e.after, e.outcome) for e in failed] == [
        (user.pk, "artist", str(user.pk), {"username": "artist"}, "failed"),
        (None, "anonymous", "ghost", {"username": "ghost"}, "failed"),
    ]
    assert (failed[0].request_id, failed[0].remote_addr) == (REQUEST_ID, "127.0.0.1")
    login, logout = AuditEvent.objects.get(action="auth.login"), AuditEvent.objects.get(action="auth.logout")
    assert (login.actor, login.remote_addr, logout.actor) == (user, "127.0.0.1", user)
    assert "wrong-guess-4711" not in str(list(AuditEvent.objects.values()))
    assert "pw-artist-4711" not in str(list(AuditEvent.objects.values()))


def test_a_failed_basic_auth_on_the_api_is_a_failed_login(client, make_user):
    import base64

    make_user("artist", password="pw-artist-4711")
    token = base64.b64encode(b"artist:wrong-guess-4711").decode()

    client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Basic {token}")

    event = AuditEvent.objects.get(action="auth.login_failed")
    assert (event.actor_name, event.remote_addr) == ("artist", "127.0.0.1")


def test_secret_looking_keys_are_never_stored(make_team):
    team = make_team()

    event = services.audit_record(
        actor=None,
        action="account.change",
        target=team,
        before={"access_key": "", "name": "a"},
        after={"access_key": "AKIA-secret-value", "nested": {"webhook_secret": "s3cr3t", "Password": "p"}, "name": "b"},
    )

    assert event.before == {"access_key": "not set", "name": "a"}
    assert event.after == {"access_key": "set", "nested": {"webhook_secret": "set", "Password": "set"}, "name": "b"}


def test_audit_snapshot_and_changed_only_keep_what_changed(make_account):
    account = make_account(name="farm-a", access_key="old-key-value")
    fields = ["name", "domain", "access_key", "team"]
    before = services.audit_snapshot(account, fields)
    account.name, account.access_key = "farm-b", "new-key-value"

    event = services.audit_record(
        actor=None, action="account.change", target=account, before=before,
        after=services.audit_snapshot(account, fields), changed_only=True,
    )  # fmt: skip

    assert (event.before, event.after) == ({"name": "farm-a"}, {"name": "farm-b"})
    assert event.team_id == account.team_id
    assert "key-value" not in str(event.before) + str(event.after)


def test_every_row_of_a_team_object_carries_its_team(make_team, make_user, make_account, make_manifest):
    team = make_team()
    lead = make_user("lead", team=team, role="lead")
    manifest = make_manifest(make_account(team), user=lead)
    job = services.job_create_upload(manifest=manifest, user=lead)

    actions = {"manifest.import", "job.create", "membership.create"}
    rows = AuditEvent.objects.filter(action__in=actions)
    assert {(row.action, row.team_id) for row in rows} == {(action, team.pk) for action in actions}
    assert services.audit_team_of(type(job)(pk=job.pk)) == team.pk


# --- the admin cannot change the trail -------------------------------------------------------------


def test_the_admin_shows_audit_rows_but_never_adds_changes_or_deletes_them(client, make_user, make_team):
    admin = make_user("boss", superuser=True)
    client.force_login(admin)
    event = services.audit_record(actor=admin, action="team.test", target=make_team())
    change = reverse("admin:transfers_auditevent_change", args=[event.pk])

    assert client.get(reverse("admin:transfers_auditevent_changelist")).status_code == 200
    assert client.get(change).status_code == 200  # a view-only page
    assert client.post(change, {"action": "forged"}).status_code == 403
    assert client.get(reverse("admin:transfers_auditevent_add")).status_code == 403
    assert client.post(reverse("admin:transfers_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    client.post(reverse("admin:transfers_auditevent_changelist"), bulk)
    event.refresh_from_db()
    assert event.action == "team.test"
    from django.contrib import admin as django_admin

    model_admin = django_admin.site._registry[AuditEvent]
    request = type("R", (), {"user": admin})()
    assert not any(
        check(request) if name == "add" else check(request, event)
        for name, check in [
            ("add", model_admin.has_add_permission),
            ("change", model_admin.has_change_permission),
            ("delete", model_admin.has_delete_permission),
        ]
    )


def test_a_team_renamed_and_deleted_in_the_admin_is_recorded_with_the_admin(client, make_user, make_team):
    admin = make_user("boss", superuser=True)
    client.force_login(admin)
    team = make_team("Old")
    inline = {"memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
              "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000"}  # fmt: skip

    assert client.post(reverse("admin:transfers_team_change", args=[team.pk]), {"name": "New"} | inline).status_code == 302
    assert client.post(reverse("admin:transfers_team_delete", args=[team.pk]), {"post": "yes"}).status_code == 302

    change, delete = AuditEvent.objects.get(action="team.change"), AuditEvent.objects.get(action="team.delete")
    assert (change.actor, change.before, change.after, change.team_id) == (admin, {"name": "Old"}, {"name": "New"}, team.pk)
    assert (delete.actor, delete.before) == (admin, {"name": "New"})


def test_a_role_changed_in_the_admin_has_the_role_before_and_after(client, make_user, make_team):
    admin = make_user("boss", superuser=True)
    client.force_login(admin)
    team = make_team("Comp")
    artist = make_user("artist", team=team, role="viewer")
    membership = artist.memberships.get()
    form = {
        "name": "Comp",
        "memberships-TOTAL_FORMS": "1", "memberships-INITIAL_FORMS": "1",
        "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-id": str(membership.pk), "memberships-0-team": str(team.pk),
        "memberships-0-user": str(artist.pk), "memberships-0-role": "lead",
    }  # fmt: skip

    response = client.post(reverse("admin:transfers_team_change", args=[team.pk]), form)

    assert response.status_code == 302
    assert Membership.objects.get(pk=membership.pk).role == "lead"
    event = AuditEvent.objects.get(action="membership.change")
    assert (event.actor, event.before["role"], event.after["role"], event.team_id) == (admin, "viewer", "lead", team.pk)
    assert get_user_model().objects.filter(username="artist").exists()


def test_manifests_and_jobs_deleted_in_the_admin_are_recorded_with_the_admin(
    client, make_user, make_account, make_manifest, make_job
):
    admin = make_user("boss", superuser=True)
    client.force_login(admin)
    account = make_account()
    manifest = make_manifest(account)
    jobs = [make_job(account=account, status="completed") for _ in range(2)]

    one = client.post(reverse("admin:transfers_manifest_delete", args=[manifest.pk]), {"post": "yes"})
    bulk = {"action": "delete_selected", "_selected_action": [job.pk for job in jobs], "post": "yes"}
    many = client.post(reverse("admin:transfers_transferjob_changelist"), bulk)

    assert one.status_code == many.status_code == 302
    deleted = AuditEvent.objects.filter(action__in=["manifest.delete", "job.delete"])
    assert sorted((e.action, e.target_id, e.actor_id, e.team_id) for e in deleted) == sorted(
        [("manifest.delete", str(manifest.pk), admin.pk, account.team_id)]
        + [("job.delete", str(job.pk), admin.pk, account.team_id) for job in jobs]
    )
