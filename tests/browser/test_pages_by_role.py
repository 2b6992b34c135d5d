"""Every page as a lead, a member, a viewer and an admin see it in Chromium: what each may open, what each
is refused (403, or 404 where the page is not theirs to know of), the controls their role shows and
hides, and no page raising a script error on the way."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from transfers.demo import demo_ensure
from transfers.models import JobGroup, Membership, TransferJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pw-4711"
ROLES = ("lead", "member", "viewer", "admin")

# page -> the status each role gets (lead, member, viewer, admin)
PAGES: dict[str, tuple[int, int, int, int]] = {
    "/": (200, 200, 200, 200),
    "/manifests/{manifest}/": (200, 200, 200, 200),
    "/jobs/": (200, 200, 200, 200),
    "/jobs/new": (200, 200, 403, 200),
    "/jobs/{job}/": (200, 200, 200, 200),
    "/groups/{group}/": (200, 200, 200, 200),
    "/farm/": (200, 200, 200, 200),
    "/farm/new": (200, 403, 403, 200),
    "/farm/{account}/edit": (200, 403, 403, 200),
    "/farm/{account}/": (200, 200, 200, 200),
    "/dashboard/": (200, 200, 200, 200),
    "/teams/": (200, 200, 200, 200),
    "/teams/{team}/": (200, 200, 200, 200),
    "/audit/": (404, 404, 404, 200),
    "/workers/": (404, 404, 404, 200),
    "/budgets/": (200, 200, 200, 200),
    "/tokens/": (200, 200, 200, 200),
    "/settings/notifications/": (200, 200, 200, 200),
    "/api/docs/": (200, 200, 200, 200),
}

# A control and the roles that see it: (page, selector, roles that see it)
CONTROLS = [
    ("/jobs/", 'a:text-is("New job")', {"lead", "member", "admin"}),
    ("/farm/", 'a:text-is("Add a farm account")', {"lead", "admin"}),
    ("/", "text=Build a manifest from files and folders", {"lead", "admin"}),
    ("/manifests/{manifest}/", "#split", {"lead", "admin"}),
    ("/manifests/{manifest}/", "#upload", {"lead", "member", "admin"}),
    ("/jobs/{job}/", 'form[data-action="resume"]:visible', {"lead", "member", "admin"}),
    ("/", 'nav a:text-is("Audit")', {"admin"}),
    ("/", 'nav a:text-is("Workers")', {"admin"}),
]


@pytest.fixture
def world() -> dict[str, Any]:
    manifest = demo_ensure()
    account, team = manifest.account, manifest.account.team
    job = TransferJob.objects.create(account=account, manifest=manifest, kind="upload_asset", status="paused")
    group = JobGroup.objects.create(account=account, pool_size=2)
    TransferJob.objects.create(account=account, manifest=manifest, kind="upload_asset", status="queued", group=group)
    users = get_user_model().objects
    for role in ("lead", "member", "viewer"):
        Membership.objects.create(user=users.create_user(f"role-{role}", password=PASSWORD), team=team, role=role)
    users.create_user("role-admin", password=PASSWORD, is_staff=True, is_superuser=True)
    return {"manifest": manifest.pk, "account": account.pk, "team": team.pk, "job": job.pk, "group": group.pk}


def _log_in(page: Page, role: str) -> list[str]:
    """Logged in as the role's user; the list script errors are appended to."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    page.goto("/login/")
    page.get_by_label("Username").fill(f"role-{role}")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Manifests")).to_be_visible()
    return errors


@pytest.mark.parametrize("role", ROLES)
def test_each_page_as_each_role(page: Page, world: dict[str, Any], role: str) -> None:
    errors = _log_in(page, role)
    column = ROLES.index(role)

    for path, statuses in PAGES.items():
        response = page.goto(path.format(**world))
        assert response is not None
        assert response.status == statuses[column], f"{role} on {path}: {response.status}, not {statuses[column]}"
        if response.status == 200:
            expect(page.locator("h1, h2").first).to_be_visible()

    for path, selector, seen_by in CONTROLS:
        page.goto(path.format(**world))
        shown = page.locator(selector).count() > 0
        assert shown == (role in seen_by), f"{role} on {path}: {selector} {'shown' if shown else 'hidden'}"

    assert errors == [], errors
