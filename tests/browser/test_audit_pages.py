"""The audit and team pages as their users see them: an admin filters the audit by actor and action and
exports what the filter shows as CSV; a lead changes a member's role on the team page, and the change is
on the audit page with the role before and after."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from transfers.models import AuditEvent, Membership, Team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pw-4711"


def _user(username: str, *, staff: bool = False, team: Team | None = None, role: str = "member") -> object:
    user = get_user_model().objects.create_user(username, password=PASSWORD, is_staff=staff, is_superuser=staff)
    if team is not None:
        Membership.objects.create(user=user, team=team, role=role)
    return user


def _log_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_an_admin_filters_the_audit_and_exports_it(page: Page):
    team = Team.objects.create(name="Lighting")
    _user("artist", team=team, role="viewer")
    _user("root", staff=True)
    page.goto("/login/")
    page.get_by_label("Username").fill("artist")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()  # a failed login, to find below
    _log_in(page, "root")

    page.get_by_role("link", name="Audit").click()
    form = page.get_by_role("form", name="Audit filters")
    form.get_by_label("Actor").fill("artist")
    form.get_by_label("Action").fill("auth.")
    form.get_by_role("button", name="Filter").click()

    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("auth.login_failed")
    expect(rows.first).to_contain_text("127.0.0.1")
    expect(rows.first).not_to_contain_text("not-the-password")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export these rows as CSV").click()
    body = Path(download.value.path()).read_text(encoding="utf-8")
    header, *lines = list(csv.reader(io.StringIO(body)))
    assert header[:3] == ["id", "time", "actor"]
    assert [(line[2], line[6], line[9]) for line in lines] == [("artist", "auth.login_failed", "failed")]
    assert "not-the-password" not in body

    form.get_by_label("Team").select_option(label="Lighting")
    form.get_by_label("Action").fill("")
    form.get_by_label("Actor").fill("")
    form.get_by_label("From").fill("2026-05-02")
    form.get_by_label("Until").fill("2026-05-01")
    form.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("alert")).to_contain_text("could not be read")


def test_a_lead_changes_a_role_and_the_admin_finds_it_in_the_audit(page: Page, browser):
    team = Team.objects.create(name="Comp")
    _user("chief", team=team, role="lead")
    artist = _user("painter", team=team, role="viewer")
    _log_in(page, "chief")

    page.get_by_role("link", name="Teams").click()
    page.get_by_role("link", name="Comp").click()
    expect(page.get_by_role("heading", name="Team Comp")).to_be_visible()
    page.get_by_label("Role of painter").select_option("member")
    page.locator("tr[data-member=painter]").get_by_role("button", name="Set role").click()

    expect(page.get_by_text("painter is now member in Comp.")).to_be_visible()
    expect(page.locator("tr[data-member=painter]")).to_contain_text("Member (starts and controls jobs)")
    assert Membership.objects.get(user=artist).role == "member"
    event = AuditEvent.objects.get(action="membership.change")
    assert (event.actor_name, event.before["role"], event.after["role"]) == ("chief", "viewer", "member")

    _user("root", staff=True)
    admin = browser.new_context(base_url=page.url.split("/teams/")[0]).new_page()
    _log_in(admin, "root")
    admin.goto("/audit/?action=membership.change")
    row = admin.locator("table.audit tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("chief")
    expect(row.locator("dl.diff .changed")).to_contain_text("viewer")
    expect(row.locator("dl.diff .changed")).to_contain_text("member")
    admin.context.close()
