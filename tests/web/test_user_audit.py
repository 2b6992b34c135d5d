"""Audit of users and team memberships: one event per change, with the admin as actor when made in the admin."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from transfers import demo
from transfers.models import AuditEvent, Membership

pytestmark = pytest.mark.django_db

REQUEST_ID = "req-audit-0123456789abcdef"


@pytest.fixture
def admin_client(client, make_user):
    admin = make_user("boss", superuser=True)
    client.force_login(admin)
    client.admin = admin
    return client


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action))


def _memberships(*rows: tuple[int, str]) -> dict[str, str]:
    """The team-membership inline of the user admin, as the browser posts it."""
    form = {
        "memberships-TOTAL_FORMS": str(len(rows)), "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
    }  # fmt: skip
    for number, (team, role) in enumerate(rows):
        form |= {f"memberships-{number}-team": str(team), f"memberships-{number}-role": role}
    return form


def test_a_user_created_in_the_admin_has_one_event_naming_the_admin_and_the_request(admin_client):
    form = {"username": "newbie", "usable_password": "true", "password1": "a-long-pass-4711", "password2": "a-long-pass-4711"}
    form |= _memberships()

    response = admin_client.post(reverse("admin:auth_user_add"), form, HTTP_X_REQUEST_ID=REQUEST_ID)

    assert response.status_code == 302
    newbie = get_user_model().objects.get(username="newbie")
    event = AuditEvent.objects.get(action="user.create", target_id=str(newbie.pk))  # get(): exactly one
    assert (event.actor, event.actor_name, event.request_id) == (admin_client.admin, "boss", REQUEST_ID)
    assert event.after == {"username": "newbie", "is_staff": False, "is_superuser": False}
    assert "a-long-pass-4711" not in str(event.after)


def test_a_user_created_in_the_admin_with_a_team_has_both_events_by_the_admin(admin_client, make_team):
    team = make_team("Comp")
    form = {"username": "newbie", "usable_password": "false"} | _memberships((team.pk, "viewer"))

    response = admin_client.post(reverse("admin:auth_user_add"), form)

    assert response.status_code == 302
    newbie = get_user_model().objects.get(username="newbie")
    assert newbie.memberships.get().team == team
    created, joined = AuditEvent.objects.get(action="user.create", target_id=str(newbie.pk)), _events("membership.create")
    assert [created.actor] + [e.actor for e in joined] == [admin_client.admin, admin_client.admin]


def test_a_user_created_outside_the_admin_has_one_event_by_the_system(make_user):
    user = make_user("scripted")

    event = AuditEvent.objects.get(action="user.create", target_id=str(user.pk))
    assert (event.actor, event.actor_name, event.request_id) == (None, "system", "")


def test_the_bootstrap_admin_has_exactly_one_creation_event():
    demo.admin_ensure(password="chosen-pw-4711")

    admin = get_user_model().objects.get(username=demo.ADMIN_USERNAME)
    assert AuditEvent.objects.filter(action="user.create", target_id=str(admin.pk)).count() == 1
    assert admin.is_staff and admin.memberships.get().role == Membership.Role.LEAD


def test_a_password_changed_in_the_admin_is_a_user_change_event(admin_client, make_user):
    user = make_user("artist")
    form = {"usable_password": "true", "password1": "another-pass-4711", "password2": "another-pass-4711"}

    response = admin_client.post(reverse("admin:auth_user_password_change", args=[user.pk]), form)

    assert response.status_code == 302
    event = AuditEvent.objects.get(action="user.change", target_id=str(user.pk))
    assert event.actor == admin_client.admin
    assert "another-pass-4711" not in str(event.after)


def test_a_user_deleted_in_the_admin_has_an_event_naming_the_admin(admin_client, make_user):
    user = make_user("leaver")
    pk = user.pk

    response = admin_client.post(reverse("admin:auth_user_delete", args=[pk]), {"post": "yes"})

    assert response.status_code == 302
    event = AuditEvent.objects.get(action="user.delete", target_id=str(pk))
    assert (event.actor, event.before["username"]) == (admin_client.admin, "leaver")


def test_a_member_added_in_the_team_admin_is_a_membership_event_naming_the_admin(admin_client, make_user):
    artist = make_user("artist")
    form = {
        "name": "Lighting",
        "memberships-TOTAL_FORMS": "1", "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-user": str(artist.pk), "memberships-0-role": "member",
    }  # fmt: skip

    response = admin_client.post(reverse("admin:transfers_team_add"), form)

    assert response.status_code == 302
    membership = Membership.objects.get(user=artist)
    event = AuditEvent.objects.get(action="membership.create")
    assert (event.actor, event.after) == (
        admin_client.admin,
        {"user": artist.pk, "username": "artist", "team": membership.team_id, "role": "member"},
    )
    assert AuditEvent.objects.get(action="team.create").actor == admin_client.admin


def test_a_role_change_records_the_role_before_and_after(make_team, make_user):
    user = make_user("artist", team=make_team(), role="viewer")
    membership = user.memberships.get()

    membership.role = Membership.Role.LEAD
    membership.save()
    membership.save()  # nothing changed: no second event

    [event] = _events("membership.change")
    assert (event.before["role"], event.after["role"], event.actor_name) == ("viewer", "lead", "system")


def test_a_removed_membership_is_recorded(make_team, make_user):
    user = make_user("artist", team=make_team(), role="member")

    user.memberships.get().delete()

    assert _events("membership.delete")[0].before["role"] == "member"


def test_a_login_writes_no_user_event(client, make_user):
    make_user("artist", password="pw-artist-4711")
    before = AuditEvent.objects.filter(action__startswith="user.").count()

    client.post("/login/", {"username": "artist", "password": "pw-artist-4711"})

    assert AuditEvent.objects.filter(action__startswith="user.").count() == before
