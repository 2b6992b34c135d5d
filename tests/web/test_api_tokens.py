"""API tokens: made on /tokens/ or by `manage.py api_token`, used as `Authorization: Token <key>`."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from transfers.api_tokens import api_token_create
from transfers.models import ApiToken, AuditEvent


@pytest.fixture
def lead(team, make_user):
    return make_user("lead", team=team, role="lead")


@pytest.fixture
def key(lead):
    return api_token_create(user=lead, name="farm script")[1]


def _jobs(client, header):
    return client.get("/api/jobs/", HTTP_AUTHORIZATION=header)


def test_a_token_authenticates_the_api_as_its_user(client, key, team, make_account, make_job, lead):
    make_job(account=make_account(team), created_by=lead)

    response = _jobs(client, f"Token {key}")

    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_a_bearer_header_works_too(client, key):
    assert _jobs(client, f"Bearer {key}").status_code == 200


def test_only_the_digest_is_stored(key):
    token = ApiToken.objects.get()
    assert key not in (token.digest, token.prefix, token.name)
    assert key.startswith(token.prefix) and len(token.prefix) < 12


@pytest.mark.parametrize("header", ["Token rvt_wrong", "Token nope", "Token", "Token a b", "Bearer rvt_x"])
def test_a_bad_key_is_refused_with_401(client, key, header):
    response = _jobs(client, header)

    assert response.status_code == 401
    assert "Token" in response["WWW-Authenticate"]


def test_a_revoked_token_is_refused(client, key):
    ApiToken.objects.update(revoked=True)

    assert _jobs(client, f"Token {key}").status_code == 401


def test_an_inactive_users_token_is_refused(client, key, lead):
    lead.is_active = False
    lead.save()

    assert _jobs(client, f"Token {key}").status_code == 401


def test_use_is_recorded_at_most_once_a_minute(client, key):
    _jobs(client, f"Token {key}")
    first = ApiToken.objects.get().last_used_at
    _jobs(client, f"Token {key}")
    assert ApiToken.objects.get().last_used_at == first

    ApiToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=2))
    _jobs(client, f"Token {key}")
    assert ApiToken.objects.get().last_used_at > first


def test_a_token_needs_no_csrf_token_for_writes(key, lead, team, make_account, make_job):
    from django.test import Client

    job = make_job(account=make_account(team), created_by=lead)
    strict = Client(enforce_csrf_checks=True)

    response = strict.post(f"/api/jobs/{job.pk}/pause/", HTTP_AUTHORIZATION=f"Token {key}")

    assert response.status_code == 200


def test_the_page_makes_a_key_shown_once(client, lead):
    client.force_login(lead)

    made = client.post("/tokens/", {"name": "render box"})
    listed = client.get("/tokens/")

    key = made.context["key"]
    assert key.startswith("rvt_") and key in made.content.decode()
    assert made["Cache-Control"] == "no-store"
    assert key not in listed.content.decode()
    assert "render box" in listed.content.decode()
    audit = AuditEvent.objects.get(action="api_token.create")
    assert (audit.actor, audit.after["name"]) == (lead, "render box")
    assert key not in str(audit.after)


def test_the_page_refuses_a_blank_name(client, lead):
    client.force_login(lead)

    response = client.post("/tokens/", {"name": ""})

    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_the_page_lists_only_the_users_own_tokens(client, lead, make_user):
    other = make_user("other")
    api_token_create(user=other, name="not yours")
    client.force_login(lead)

    assert "not yours" not in client.get("/tokens/").content.decode()


def test_the_page_needs_a_login(client):
    assert client.get("/tokens/").status_code == 302


def test_revoke_refuses_the_key_and_is_audited(client, lead, key):
    client.force_login(lead)
    token = ApiToken.objects.get()

    response = client.post(f"/tokens/{token.pk}/revoke")

    assert response.status_code == 302
    client.logout()
    assert _jobs(client, f"Token {key}").status_code == 401
    audit = AuditEvent.objects.get(action="api_token.revoke")
    assert (audit.actor, audit.target_id) == (lead, str(token.pk))
    assert key not in str(audit.after)


def test_revoking_another_users_token_is_a_404(client, lead, make_user):
    token, _ = api_token_create(user=make_user("other", staff=True), name="theirs")
    client.force_login(lead)

    assert client.post(f"/tokens/{token.pk}/revoke").status_code == 404
    assert not ApiToken.objects.get(pk=token.pk).revoked


def test_revoke_needs_a_post(client, lead, key):
    client.force_login(lead)

    assert client.get(f"/tokens/{ApiToken.objects.get().pk}/revoke").status_code == 405


def test_the_command_prints_only_the_key(lead, client):
    out = io.StringIO()

    call_command("api_token", "lead", "--name", "ci", stdout=out)

    key = out.getvalue().strip()
    assert "\n" not in key and key.startswith("rvt_")
    assert ApiToken.objects.get().name == "ci"
    assert _jobs(client, f"Token {key}").status_code == 200
    assert AuditEvent.objects.get(action="api_token.create").actor_name == "system"


def test_the_command_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="no user"):
        call_command("api_token", "ghost", stdout=io.StringIO())
