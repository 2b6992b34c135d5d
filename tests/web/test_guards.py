"""Guards: accounts without a connector, who may store credentials, what debug pages may show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.urls import reverse

from rvweb.debug import SafeReporterFilter
from transfers import services
from transfers.models import FarmAccount, TransferJob


@pytest.fixture
def lead(team, make_user):
    return make_user("lead", team=team, role="lead")


def _fox_manifest(lead, allowed_dir: Path):
    source = allowed_dir / "a.exr"
    source.write_bytes(b"a")
    account = FarmAccount.objects.create(name="fox", kind=FarmAccount.Kind.FOX, team=lead.memberships.get().team)
    data = json.dumps({"asset": [{"local": str(source), "server": "/D/a.exr"}]}).encode()
    return services.manifest_import(name="m", account=account, data=data, user=lead)


def test_an_upload_to_a_farm_without_a_connector_is_refused_with_the_reason(client, lead, allowed_dir, without_fox_connector):
    manifest = _fox_manifest(lead, allowed_dir)
    client.force_login(lead)

    response = client.post(reverse("manifest-upload", args=[manifest.pk]), follow=True)

    assert TransferJob.objects.count() == 0
    assert "has no connector for it" in response.content.decode()


def test_the_api_refuses_an_upload_to_a_farm_without_a_connector(client, lead, allowed_dir, without_fox_connector):
    manifest = _fox_manifest(lead, allowed_dir)
    client.force_login(lead)

    response = client.post(f"/api/manifests/{manifest.pk}/upload_asset/", {}, content_type="application/json")

    assert response.status_code == 400
    assert TransferJob.objects.count() == 0


def test_a_user_who_leads_no_team_may_not_store_farm_credentials_through_the_api(client, make_user):
    client.force_login(make_user("member-of-nothing"))

    response = client.post("/api/accounts/", {"name": "x", "access_id": "id", "access_key": "k"}, content_type="application/json")

    assert response.status_code == 403
    assert not FarmAccount.objects.filter(name="x").exists()


def test_debug_pages_hide_the_urls_that_carry_passwords(settings):
    settings.DATABASE_URL = "postgres://u:hunter2@db/x"
    settings.BROKER_URL = "amqp://u:hunter2@mq//"

    shown = repr(SafeReporterFilter().get_safe_settings())

    assert "hunter2" not in shown
