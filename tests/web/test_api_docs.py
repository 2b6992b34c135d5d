"""The OpenAPI schema (/api/schema/) and its Swagger UI (/api/docs/), served from here under the CSP."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command

from transfers.api_tokens import api_token_create


@pytest.fixture
def lead(team, make_user):
    return make_user("lead", team=team, role="lead")


def test_the_schema_is_generated_without_a_warning(db, tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))

    assert "/api/jobs/{id}/pause/" in (tmp_path / "schema.yaml").read_text()


def test_a_token_reads_the_schema_as_json(client, lead):
    key = api_token_create(user=lead, name="t")[1]

    response = client.get("/api/schema/?format=json", HTTP_AUTHORIZATION=f"Token {key}")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "tokenAuth" in schema["components"]["securitySchemes"]
    assert schema["paths"]["/api/accounts/{id}/{kind}/"]["post"]["operationId"] == "accounts_start"


def test_the_schema_needs_credentials(client):
    assert client.get("/api/schema/").status_code == 401


def test_the_docs_page_sends_anonymous_visitors_to_the_login(client):
    response = client.get("/api/docs/")

    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_docs_page_loads_everything_from_this_host(client, lead):
    client.force_login(lead)

    page = client.get("/api/docs/")
    script = client.get("/api/docs/?script=")

    html = page.content.decode()
    assert page.status_code == 200 and "<script>" not in html  # the CSP allows no inline script
    assert "script-src 'self'" in page["Content-Security-Policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(src.startswith("/") for src in sources), sources
    for src in sources:
        if src.startswith("/static/"):
            assert finders.find(src.removeprefix("/static/")), src
    assert script.status_code == 200 and "/api/schema/" in script.content.decode()


def test_each_kinds_options_are_a_component_the_doors_take(client, lead):
    client.force_login(lead)

    schema = client.get("/api/schema/?format=json").json()

    options = schema["components"]["schemas"]["DownloadOptions"]
    assert options["properties"]["max_speed"]["nullable"] is True and "anyOf" not in options["properties"]["max_speed"]
    body = schema["paths"]["/api/accounts/{id}/{kind}/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/DownloadOptions"} in body["anyOf"]
    assert schema["components"]["schemas"]["UploadConfigOptions"]["required"] == ["task_id", "config_file_list"]
