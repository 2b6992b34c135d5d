"""The demo's simulated render as a lead sees it: Farm → the demo account → Simulate a render, and the
task's frames counted up on the same page (no reload) until it is done."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from transfers.demo import DEMO_ACCOUNT, demo_ensure
from transfers.models import FarmTask, Membership

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pw-4711"
FINISH_MS = 60_000


def test_a_lead_simulates_a_render_and_watches_its_frames_arrive(
    page: Page, queue_held: Callable[[], AbstractContextManager[None]]
) -> None:
    user = get_user_model().objects.create_user("lead", password=PASSWORD)
    account = demo_ensure().account
    Membership.objects.create(user=user, team=account.team, role=Membership.Role.LEAD)
    page.goto("/login/")
    page.get_by_label("Username").fill("lead")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Farm").click()
    page.get_by_role("link", name=DEMO_ACCOUNT).click()
    expect(page.get_by_role("heading", name=f"Render tasks of {DEMO_ACCOUNT}")).to_be_visible()

    with queue_held():  # the page must show the task before its first frame
        page.get_by_text("Simulate a render", exact=True).first.click()  # open the details
        page.get_by_label("Scene").fill("browser_shot")
        page.get_by_label("Frames").fill("6")
        page.get_by_label("Seconds per frame").fill("0.3")
        page.get_by_role("button", name="Simulate a render").click()
        task = FarmTask.objects.get(account=account, scene="browser_shot")
        row = page.locator(f'tr[data-task="{task.task_id}"]')
        expect(row.locator(".frames")).to_have_text("0/6")
        page.evaluate("window.__rvwebMarker = 'same page'")

    expect(row.locator(".frames")).to_have_text("6/6", timeout=FINISH_MS)
    expect(row.locator(".status")).to_have_text("Done")
    assert page.evaluate("window.__rvwebMarker") == "same page", "the page was reloaded"
