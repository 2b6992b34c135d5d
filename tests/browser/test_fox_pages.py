"""A Fox Renderfarm account in Chromium, as a team lead uses it: test the connection, upload a manifest
through the vendor's transmitter, follow a render task and auto-download its frames as they come. The
farm is the fake API (tests/fox_farm.py) and the worker's transmitter the fake one (tests/fake_transmitter)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from tests.fox_farm import FoxFarmFake, task_info
from transfers import services
from transfers.models import FarmAccount, Membership, Team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pw-fox-2718"
FINISH_MS = 60_000
JOB_URL = re.compile(r"/jobs/(\d+)/$")


@pytest.fixture
def fox(fox_farm: FoxFarmFake, listening_port: int, closed_port: int, celery_worker: object) -> tuple[FarmAccount, str]:
    """A lead of a team whose farm account is the fake Fox farm's main account; two lines, one answering."""
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True), ("CTCC", closed_port, False)])
    team = Team.objects.create(name=f"Fox team {uuid.uuid4().hex[:6]}")
    account = FarmAccount.objects.create(name="Fox studio", team=team, kind=FarmAccount.Kind.FOX, **fox_farm.account_kwargs())
    user = get_user_model().objects.create_user("foxlead", password=PASSWORD)
    Membership.objects.create(user=user, team=team, role=Membership.Role.LEAD)
    return account, "foxlead"


def _log_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_a_lead_tests_the_connection_of_a_fox_account(page: Page, fox: tuple[FarmAccount, str], listening_port: int) -> None:
    account, lead = fox
    _log_in(page, lead)
    page.goto(f"/farm/{account.pk}/edit")

    page.get_by_role("button", name="Test connection").click()

    result = page.locator("#check-result")
    expect(result).to_contain_text("signed in as studio-main (user id 100001)")
    expect(result).to_contain_text("input 10201, output 20201, config 30201")
    expect(result).to_contain_text(re.compile(rf"HKCT \(aspera, 127\.0\.0\.1:{listening_port}\): \d+ ms"))
    expect(result).to_contain_text("CTCC")
    expect(result).to_contain_text("unreachable")
    expect(result).to_contain_text("rayvision_transmitter 1.1.5")
    assert fox_key(account) not in page.content()


def fox_key(account: FarmAccount) -> str:
    account.refresh_from_db()
    return account.access_key


def test_a_lead_uploads_follows_a_task_and_auto_downloads_its_frames(
    page: Page, fox: tuple[FarmAccount, str], fox_farm: FoxFarmFake, allowed_dir: Path
) -> None:
    account, lead = fox
    shots = allowed_dir / "fox-shots"
    shots.mkdir()
    for name in ("a.exr", "b.exr", "c.exr"):
        (shots / name).write_bytes(name.encode() * 5000)
    document = {"asset": [{"local": str(shots / n), "server": f"/D/shots/{n}"} for n in ("a.exr", "b.exr", "c.exr")]}
    user = get_user_model().objects.get(username=lead)
    manifest = services.manifest_import(name="fox shots", account=account, data=json.dumps(document).encode(), user=user)
    fox_farm.main.tasks[6001] = task_info(6001, 5, "browser_live")  # rendering
    fox_farm.add_output("6001_browser_live/frame_0001.exr", b"frame one" * 100)
    _log_in(page, lead)

    # Upload: the manifest's button, then the job page with the line it took and why.
    page.goto(f"/manifests/{manifest.pk}/")
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page).to_have_url(JOB_URL)
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=FINISH_MS)
    page.reload()  # the route is written by the run: the page shows it from the database
    expect(page.locator("#job-route")).to_contain_text("HKCT")
    expect(page.locator("#job-route")).to_contain_text("quickest")
    expect(page.locator("#job-route")).to_contain_text("CTCC unreachable")
    for name in ("a.exr", "b.exr", "c.exr"):
        assert (fox_farm.input_dir() / "D" / "shots" / name).read_bytes() == (shots / name).read_bytes()

    # Follow the task on the farm page, and auto-download its frames.
    page.get_by_role("link", name="Farm").click()
    page.get_by_role("link", name="Fox studio").click()
    row = page.locator('tr[data-task="6001"]')
    expect(row.locator(".status")).to_have_text("Rendering")
    page.get_by_text("Download frames", exact=True).click()
    form = page.locator("#download-form")
    form.get_by_label("Kind").select_option("auto_download")
    form.get_by_label(re.compile(r"(^|\s)6001\s")).check()
    local = allowed_dir / "fox-frames"
    form.get_by_label("Local path").fill(str(local))
    form.get_by_label("sleep_time (s between listings)").fill("0.5")
    page.get_by_role("button", name="Start the download").click()
    expect(page).to_have_url(JOB_URL)
    expect(page.locator("#job-files")).to_contain_text("1 of 1 done", timeout=FINISH_MS)

    fox_farm.add_output("6001_browser_live/frame_0002.exr", b"frame two" * 100)
    fox_farm.main.tasks[6001] = task_info(6001, 25, "browser_live")  # done
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=FINISH_MS)
    expect(page.locator("#job-files")).to_have_text("2 of 2 done")
    assert (local / "6001_browser_live/frame_0002.exr").read_bytes() == b"frame two" * 100
