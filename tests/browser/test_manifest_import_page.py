"""Importing a manifest from the page: the worker reads it while the page shows its progress, then the
page shows the entries, or the problems, without the user reloading it."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from transfers.models import FarmAccount, Membership, Team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pw-5813"
DONE_MS = 60_000


@pytest.fixture
def lead() -> str:
    user = get_user_model().objects.create_user("importer", password=PASSWORD)
    team = Team.objects.create(name="Importers")
    Membership.objects.create(user=user, team=team, role=Membership.Role.LEAD)
    FarmAccount.objects.create(name="import farm", team=team)
    return "importer"


def _import(page: Page, username: str, path: Path) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("Name").fill(path.stem)
    page.get_by_label("Farm account").select_option(label="import farm")
    page.get_by_label("File").set_input_files(str(path))
    page.get_by_role("button", name="Import").click()


def test_the_page_follows_an_import_to_its_entries(
    page: Page, lead: str, allowed_dir: Path, tmp_path: Path, queue_held: Callable[[], AbstractContextManager[None]]
) -> None:
    (allowed_dir / "a.exr").write_bytes(b"abc")
    upload = tmp_path / "shots.json"
    upload.write_text(json.dumps({"asset": [{"local": str(allowed_dir / "a.exr"), "server": "/D/a.exr"}]}))

    with queue_held():
        _import(page, lead, upload)
        expect(page.locator("#manifest-import")).to_be_visible()
        expect(page.locator("#import-stored")).to_have_text("0")
    expect(page.get_by_role("heading", name="Entries")).to_be_visible(timeout=DONE_MS)
    expect(page.get_by_role("cell", name="/D/a.exr")).to_be_visible()
    expect(page.get_by_role("button", name="Upload", exact=True)).to_be_visible()


def test_the_page_shows_the_problems_of_a_refused_import(
    page: Page, lead: str, allowed_dir: Path, tmp_path: Path, celery_worker: object
) -> None:
    upload = tmp_path / "broken.json"
    upload.write_text(json.dumps({"asset": [{"local": str(allowed_dir / "a.exr"), "server": "/D/../../etc/x"}]}))

    _import(page, lead, upload)

    expect(page.locator("#manifest-problems")).to_contain_text(
        "entry 1: server path '/D/../../etc/x' contains '..'", timeout=DONE_MS
    )
    expect(page.get_by_role("button", name="Upload", exact=True)).to_have_count(0)
