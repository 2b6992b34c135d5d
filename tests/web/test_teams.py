"""Team pages and API: a lead adds an existing user, changes a role and removes a member (each one audit
row, with the role before and after); members and viewers see the list only; another team is a 404."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from transfers import teams
from transfers.models import AuditEvent, Membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def crew(make_team, make_user):
    """Blue: a lead, a member and a viewer; Red: its own lead. And "newbie", in no team."""
    blue, red = make_team("Blue"), make_team("Red")
    return {
        "blue": blue,
        "red": red,
        "lead": make_user("lead", team=blue, role="lead"),
        "member": make_user("member", team=blue, role="member"),
        "viewer": make_user("viewer", team=blue, role="viewer"),
        "redlead": make_user("redlead", team=red, role="lead"),
        "newbie": make_user("newbie"),
    }


def _as(client, user):
    client.force_login(user)
    return client


def _membership(crew, name: str) -> Membership:
    return Membership.objects.get(user=crew[name], team=crew["blue"])


def _messages(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# --- pages ----------------------------------------------------------------------------------------


def test_the_team_list_shows_the_users_teams_only(client, crew):
    response = _as(client, crew["member"]).get(reverse("team-list"))

    assert response.status_code == 200
    assert [team.name for team, _ in response.context["rows"]] == ["Blue"]


def test_staff_see_every_team(client, crew, make_user):
    response = _as(client, make_user("staffer", staff=True)).get(reverse("team-list"))

    assert [team.name for team, _ in response.context["rows"]] == ["Blue", "Red"]


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_see_the_members_read_only(client, crew, role):
    response = _as(client, crew[role]).get(reverse("team-detail", args=[crew["blue"].pk]))

    assert response.status_code == 200
    assert [m.user.username for m in response.context["members"]] == ["lead", "member", "viewer"]
    assert not response.context["may_manage"]
    assert b"Set role" not in response.content and b"Add a member" not in response.content


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_change_anything(client, crew, role):
    client = _as(client, crew[role])
    blue = crew["blue"]
    target = _membership(crew, "viewer")

    client.post(reverse("team-member-role", args=[blue.pk, target.pk]), {"role": "lead"})
    response = client.post(reverse("team-member-add", args=[blue.pk]), {"username": "newbie", "role": "lead"})
    client.post(reverse("team-member-remove", args=[blue.pk, target.pk]))

    assert "you may not manage this team" in " ".join(_messages(response))
    assert Membership.objects.get(pk=target.pk).role == "viewer"
    assert not Membership.objects.filter(user=crew["newbie"]).exists()
    assert not AuditEvent.objects.filter(action__startswith="membership.", actor__username=role).exists()


def test_another_teams_page_and_members_are_404(client, crew):
    client = _as(client, crew["lead"])
    red = crew["red"]
    red_membership = Membership.objects.get(user=crew["redlead"])

    assert client.get(reverse("team-detail", args=[red.pk])).status_code == 404
    assert client.post(reverse("team-member-add", args=[red.pk]), {"username": "newbie", "role": "lead"}).status_code == 404
    assert client.post(reverse("team-member-role", args=[red.pk, red_membership.pk]), {"role": "viewer"}).status_code == 404
    # Blue's URL with Red's membership: not one of Blue's members.
    blue = crew["blue"]
    assert client.post(reverse("team-member-role", args=[blue.pk, red_membership.pk]), {"role": "viewer"}).status_code == 404
    assert client.post(reverse("team-member-remove", args=[blue.pk, red_membership.pk])).status_code == 404
    assert Membership.objects.get(pk=red_membership.pk).role == "lead"


def test_a_lead_changes_a_role_recorded_with_before_after_actor_and_request(client, crew):
    client = _as(client, crew["lead"])
    blue, target = crew["blue"], _membership(crew, "viewer")

    response = client.post(
        reverse("team-member-role", args=[blue.pk, target.pk]), {"role": "member"}, HTTP_X_REQUEST_ID="req-team-0123456789"
    )

    assert response.status_code == 302
    assert Membership.objects.get(pk=target.pk).role == "member"
    event = AuditEvent.objects.get(action="membership.change")
    assert (event.actor, event.before["role"], event.after["role"]) == (crew["lead"], "viewer", "member")
    assert (event.team_id, event.request_id, event.remote_addr) == (blue.pk, "req-team-0123456789", "127.0.0.1")
    assert event.after["username"] == "viewer"


def test_a_lead_adds_an_existing_user_and_removes_a_member(client, crew):
    client = _as(client, crew["lead"])
    blue = crew["blue"]

    client.post(reverse("team-member-add", args=[blue.pk]), {"username": "newbie", "role": "viewer"})
    client.post(reverse("team-member-remove", args=[blue.pk, _membership(crew, "member").pk]))

    assert Membership.objects.get(user=crew["newbie"]).role == "viewer"
    assert not Membership.objects.filter(user=crew["member"]).exists()
    added = AuditEvent.objects.get(action="membership.create", after__username="newbie")
    removed = AuditEvent.objects.get(action="membership.delete")
    assert (added.actor, added.team_id, removed.actor, removed.before["username"]) == (
        crew["lead"],
        blue.pk,
        crew["lead"],
        "member",
    )


@pytest.mark.parametrize(
    "form, problem",
    [
        ({"username": "nobody", "role": "member"}, "no active user is called 'nobody'"),
        ({"username": "member", "role": "member"}, "member is already in Blue"),
        ({"username": "newbie", "role": "boss"}, "role: Select a valid choice"),
        ({"username": "", "role": "member"}, "username: This field is required"),
    ],
)
def test_adding_refuses_bad_input_with_a_message(client, crew, form, problem):
    response = _as(client, crew["lead"]).post(reverse("team-member-add", args=[crew["blue"].pk]), form)

    assert response.status_code == 302
    assert problem in " ".join(_messages(response))
    assert not AuditEvent.objects.filter(action="membership.create", actor=crew["lead"]).exists()


def test_a_bad_role_is_refused(client, crew):
    target = _membership(crew, "viewer")

    response = _as(client, crew["lead"]).post(reverse("team-member-role", args=[crew["blue"].pk, target.pk]), {"role": "god"})

    assert "Choose a role" in " ".join(_messages(response))
    assert Membership.objects.get(pk=target.pk).role == "viewer"


def test_the_last_lead_cannot_demote_or_remove_themselves(client, crew):
    client = _as(client, crew["lead"])
    blue, own = crew["blue"], _membership(crew, "lead")

    demoted = client.post(reverse("team-member-role", args=[blue.pk, own.pk]), {"role": "viewer"})
    removed = client.post(reverse("team-member-remove", args=[blue.pk, own.pk]))

    assert "keeps at least one lead" in " ".join(_messages(demoted) + _messages(removed))
    assert Membership.objects.get(pk=own.pk).role == "lead"


def test_setting_the_same_role_records_nothing(crew):
    assert not teams.team_member_set_role(membership=_membership(crew, "member"), role="member", user=crew["lead"])
    assert not AuditEvent.objects.filter(action="membership.change").exists()


# --- API ------------------------------------------------------------------------------------------


def test_api_lists_the_users_teams_and_their_members(client, crew):
    client = _as(client, crew["viewer"])

    teams_seen = client.get("/api/teams/").json()
    members = client.get(f"/api/teams/{crew['blue'].pk}/members/").json()

    assert [team["name"] for team in teams_seen["results"]] == ["Blue"]
    assert [(m["username"], m["role"]) for m in members] == [("lead", "lead"), ("member", "member"), ("viewer", "viewer")]
    assert client.get(f"/api/teams/{crew['red'].pk}/members/").status_code == 404


def test_api_a_lead_adds_changes_and_removes(client, crew):
    client = _as(client, crew["lead"])
    base = f"/api/teams/{crew['blue'].pk}/members/"

    added = client.post(base, {"username": "newbie", "role": "viewer"}, content_type="application/json")
    changed = client.patch(f"{base}{added.json()['id']}/", {"role": "member"}, content_type="application/json")
    removed = client.delete(f"{base}{added.json()['id']}/")

    assert added.status_code == 201 and added.json()["username"] == "newbie"
    assert changed.status_code == 200 and changed.json()["role"] == "member"
    assert removed.status_code == 204
    actions = list(
        AuditEvent.objects.filter(actor=crew["lead"], action__startswith="membership.").values_list("action", flat=True)
    )
    assert sorted(actions) == ["membership.change", "membership.create", "membership.delete"]


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_api_non_leads_get_403_on_changes(client, crew, role):
    client = _as(client, crew[role])
    base = f"/api/teams/{crew['blue'].pk}/members/"
    target = _membership(crew, "viewer")

    assert client.post(base, {"username": "newbie"}, content_type="application/json").status_code == 403
    assert client.patch(f"{base}{target.pk}/", {"role": "lead"}, content_type="application/json").status_code == 403
    assert client.delete(f"{base}{target.pk}/").status_code == 403


def test_api_bad_input_is_a_400_and_another_team_a_404(client, crew):
    client = _as(client, crew["lead"])
    base = f"/api/teams/{crew['blue'].pk}/members/"
    red_base = f"/api/teams/{crew['red'].pk}/members/"
    red_membership = Membership.objects.get(user=crew["redlead"])

    assert client.post(base, {"username": "nobody"}, content_type="application/json").status_code == 400
    assert client.post(base, {"username": "newbie", "role": 7}, content_type="application/json").status_code == 400
    assert client.post(base, "[]", content_type="application/json").status_code == 400
    patch = client.patch(f"{base}{_membership(crew, 'viewer').pk}/", {"role": ["lead"]}, content_type="application/json")
    assert patch.status_code == 400
    assert client.post(red_base, {"username": "newbie"}, content_type="application/json").status_code == 404
    assert client.delete(f"{base}{red_membership.pk}/").status_code == 404
    assert client.delete(f"{base}99999999999999999999/").status_code == 404
