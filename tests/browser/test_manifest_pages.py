"""A lead's manifest tools in Chromium: build a manifest with the server-side folder picker, browse and
filter it, split it into parts and dry-run it, each done by the real worker while the page follows."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from transfers.models import FarmAccount, Membership, Team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pw-7261"
DONE_MS = 60_000


@pytest.fixture
def lead() -> str:
    user = get_user_model().objects.create_user("builder", password=PASSWORD)
    team = Team.objects.create(name="Builders")
    Membership.objects.create(user=user, team=team, role=Membership.Role.LEAD)
    FarmAccount.objects.create(name="build farm", team=team)
    return "builder"


def test_a_lead_builds_browses_splits_and_dry_runs_a_manifest(
    page: Page, lead: str, allowed_dir: Path, celery_worker: object
) -> None:
    shots = allowed_dir / "shots"
    (shots / "sub").mkdir(parents=True)
    for name in ("a.exr", "b.exr", "c.png"):
        (shots / name).write_bytes(b"x" * 10)
    (shots / "sub" / "d.exr").write_bytes(b"y" * 20)

    page.goto("/login/")
    page.get_by_label("Username").fill(lead)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    # The picker: the allowed root, then the test's folder, then tick "shots" (walked with its sub-folder).
    picker = page.locator("#picker")
    picker.get_by_role("link", name=str(allowed_dir.parent) + "/").click()
    picker.get_by_role("link", name=allowed_dir.name + "/").click()
    expect(page.locator("#picker-path")).to_have_text(str(allowed_dir))
    picker.get_by_label("choose shots").check()
    expect(page.locator("#picker-chosen")).to_have_text(str(shots))
    picker.get_by_label("Manifest title").fill("picked shots")
    picker.get_by_label("Account").select_option(label="build farm")
    page.get_by_role("button", name="Build the manifest").click()

    # The new manifest's page follows the worker's walk, then shows the entries.
    expect(page.get_by_role("heading", name="picked shots")).to_be_visible()
    expect(page.locator("#entries")).to_be_visible(timeout=DONE_MS)
    expect(page.locator("#entries tbody tr")).to_have_count(4)
    expect(page.get_by_text("4 files, 50 bytes")).to_be_visible()

    # Browse with filters: extension, then a search that matches nothing.
    page.get_by_label("Extension").fill("exr")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#entries tbody tr")).to_have_count(3)
    expect(page.get_by_role("cell", name=f"{shots}/c.png")).to_have_count(0)
    page.get_by_label("Extension").fill("")
    page.get_by_label("Search").fill("sub/d")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#entries tbody tr")).to_have_count(1)
    page.get_by_label("Size from (bytes)").fill("30")
    page.get_by_label("Size to (bytes)").fill("5")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#filter-errors")).to_be_visible()
    page.get_by_role("link", name="Clear").click()

    # Split into parts of 3: two parts (3 and 1), no empty one; the page lists them once the worker is done.
    page.get_by_label("max_resources_number (entries per part)").fill("3")
    page.get_by_role("button", name="Split").click()
    parts = page.locator("#parts")
    expect(parts).to_contain_text("picked shots — part 1 of 2 — 3 files, ready", timeout=DONE_MS)
    # The page may have been drawn between the two parts; it reloads by itself once the split ends.
    expect(parts).to_contain_text("picked shots — part 2 of 2 — 1 files, ready", timeout=DONE_MS)

    # Dry run: everything would be sent (the ledger has nothing yet); a missing file is named.
    (shots / "b.exr").unlink()
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#dry-send")).to_have_text("3 files, 40 bytes", timeout=DONE_MS)
    expect(page.locator("#dry-missing")).to_have_text("1")
    expect(page.get_by_text(f"{shots}/b.exr").first).to_be_visible()

    # More files, added to this manifest by typing a folder's path into the picker; one already there is skipped.
    (shots / "e.exr").write_bytes(b"z" * 5)
    page.get_by_text("Add files and folders").click()
    picker.get_by_label("Open a folder by its path").fill(str(shots))
    picker.get_by_role("button", name="Open").click()
    expect(page.locator("#picker-path")).to_have_text(str(shots))
    picker.get_by_label("choose e.exr").check()
    picker.get_by_label("choose a.exr").check()
    page.get_by_role("button", name="Add to this manifest").click()
    expect(page.get_by_text("1 files added, 1 already in the manifest, 0 skipped.")).to_be_visible(timeout=DONE_MS)

    # A part opens as a manifest of its own, pointing back to the original.
    parts.get_by_role("link", name="picked shots — part 2 of 2").click()
    expect(page.get_by_text("A part of picked shots")).to_be_visible()
    expect(page.locator("#entries tbody tr")).to_have_count(1)
