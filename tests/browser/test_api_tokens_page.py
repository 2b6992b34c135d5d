"""A lead makes an API key on the API tokens page, a script uses it, the lead revokes it; the API's
Swagger UI draws the schema under the site's CSP, from files served here."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from transfers.models import Membership, Team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pw-4712"


def _log_in(page: Page) -> None:
    user = get_user_model().objects.create_user("lead", password=PASSWORD)
    Membership.objects.create(user=user, team=Team.objects.create(name="Studio"), role=Membership.Role.LEAD)
    page.goto("/login/")
    page.get_by_label("Username").fill("lead")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_a_lead_makes_a_key_a_script_uses_it_and_the_lead_revokes_it(page: Page, browser) -> None:
    _log_in(page)
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("pipeline")
    page.get_by_role("button", name="Make a key").click()
    key = page.locator("#key").inner_text()
    script = browser.new_context(base_url=page.url.split("/tokens/")[0])  # no cookies: the key alone

    answer = script.request.get("/api/jobs/", headers={"Authorization": f"Token {key}"})

    assert answer.status == 200
    page.goto("/tokens/")
    expect(page.locator("#key")).to_have_count(0)  # shown once
    row = page.locator("#tokens tr", has_text="pipeline")
    expect(row).not_to_contain_text("never")  # last used: the script's call
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("#tokens tr", has_text="pipeline")).to_contain_text("revoked")
    refused = script.request.get("/api/jobs/", headers={"Authorization": f"Token {key}"})
    assert refused.status == 401 and refused.json()["error"]["code"] == "authentication_failed"
    script.close()


def test_the_api_docs_draw_the_schema_without_a_csp_violation(page: Page) -> None:
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    _log_in(page)

    page.goto("/api/docs/")

    expect(page.get_by_text("rvweb API").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/api/jobs/{id}/pause/")).to_be_visible()
    assert violations == []
