"""The demo upload as a user sees it: log in, open the demo manifest, press Upload, watch the job finish."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, WebSocket, expect

from tests.conftest import Service
from transfers.demo import DEMO_FILES, DEMO_MANIFEST, demo_ensure
from transfers.models import Membership, TransferJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pw-4711"
JOB_URL = re.compile(r"/jobs/(\d+)/$")
# Generous: 300 files through a real worker, on a CI machine that may be busy with other test runs.
FINISH_MS = 120_000


def _log_in(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def _start_demo_upload(page: Page, username: str) -> None:
    """From the login page to the job page of a fresh demo upload."""
    page.goto("/login/")
    _log_in(page, username, PASSWORD)
    expect(page.get_by_role("heading", name="Manifests")).to_be_visible()
    page.get_by_role("link", name=DEMO_MANIFEST).click()
    expect(page.get_by_role("heading", name=DEMO_MANIFEST)).to_be_visible()
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page).to_have_url(JOB_URL)
    expect(page.locator("#job-status")).to_have_text("Queued")


def _mark_page(page: Page) -> None:
    """A reload or a navigation would drop this; the final checks look for it."""
    page.evaluate("window.__rvwebMarker = 'same page'")


def _expect_finished_without_reload(page: Page) -> None:
    expect(page.locator("#job-bar")).to_have_attribute("aria-valuenow", "100", timeout=FINISH_MS)
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=FINISH_MS)
    expect(page.locator("#job-files")).to_have_text(f"{DEMO_FILES} of {DEMO_FILES} done")
    expect(page.locator("#job-percent")).to_have_text("100%")
    assert page.evaluate("window.__rvwebMarker") == "same page", "the job page was reloaded"


@pytest.fixture
def demo_user() -> str:
    """A member of the demo account's team ("Studio"): may start and control its uploads."""
    user = get_user_model().objects.create_user("artist", password=PASSWORD)
    manifest = demo_ensure()
    Membership.objects.create(user=user, team=manifest.account.team, role=Membership.Role.MEMBER)
    return "artist"


def test_demo_upload_streams_to_100_percent_over_the_websocket_without_a_reload(
    page: Page, demo_user: str, queue_held: Callable[[], AbstractContextManager[None]]
) -> None:
    frames: list[str] = []

    def watch(socket: WebSocket) -> None:
        if "/ws/jobs/" in socket.url:
            socket.on("framereceived", lambda payload: frames.append(str(payload)))

    page.on("websocket", watch)
    with queue_held():
        _start_demo_upload(page, demo_user)
        expect(page.locator("#job-live")).to_have_text("live")
        _mark_page(page)

    _expect_finished_without_reload(page)
    assert any('"job.progress"' in frame for frame in frames), "no progress arrived over the websocket"
    assert any('"job.state"' in frame and '"completed"' in frame for frame in frames), frames[-3:]
    expect(page.locator("#job-live")).to_have_text("")
    job = TransferJob.objects.get(pk=int(JOB_URL.search(page.url).group(1)))  # type: ignore[union-attr]
    assert (job.status, job.files_done) == (TransferJob.Status.COMPLETED, DEMO_FILES)


def test_without_a_websocket_the_job_page_polls_to_the_final_state(
    page: Page, demo_user: str, queue_held: Callable[[], AbstractContextManager[None]]
) -> None:
    # Every job socket is refused as soon as it opens, as a proxy without websocket support would.
    page.route_web_socket("**/ws/jobs/**", lambda socket: socket.close(code=1011, reason="no websockets here"))
    with queue_held():
        _start_demo_upload(page, demo_user)
        expect(page.locator("#job-live")).to_contain_text("polling")
        _mark_page(page)

    _expect_finished_without_reload(page)


def test_a_wrong_password_is_refused_on_the_login_page(page: Page) -> None:
    get_user_model().objects.create_user("artist", password=PASSWORD)
    page.goto("/login/")

    _log_in(page, "artist", "not-the-password")

    expect(page).to_have_url(re.compile(r"/login/$"))
    expect(page.locator("p.error")).to_have_text("Your username and password didn't match. Please try again.")
    expect(page.get_by_role("link", name="Manifests")).to_have_count(0)


def test_an_anonymous_visitor_to_a_job_page_is_sent_to_log_in_and_then_back(page: Page) -> None:
    user = get_user_model().objects.create_user("artist", password=PASSWORD)
    manifest = demo_ensure()
    Membership.objects.create(user=user, team=manifest.account.team, role=Membership.Role.VIEWER)
    # A row only, never enqueued: no worker runs in this test.
    job = TransferJob.objects.create(account=manifest.account, manifest=manifest, created_by=user, files_total=1)

    page.goto(f"/jobs/{job.pk}/")

    expect(page).to_have_url(re.compile(rf"/login/\?next=/jobs/{job.pk}/$"))
    expect(page.locator("#job")).to_have_count(0)
    _log_in(page, "artist", PASSWORD)
    expect(page).to_have_url(re.compile(rf"/jobs/{job.pk}/$"))
    expect(page.locator("#job-status")).to_have_text("Queued")


def test_a_lead_slows_pauses_resumes_and_speeds_up_an_upload_from_the_pages(
    page: Page, demo_user: str, celery_worker: Service
) -> None:
    page.goto("/login/")
    _log_in(page, demo_user, PASSWORD)
    page.get_by_role("link", name=DEMO_MANIFEST).click()
    page.get_by_text("Upload options").click()
    page.get_by_label("max_speed (KB/s)").fill("1024")  # the 46 MB demo would take ~45 s
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#job-active li").first).to_be_visible(timeout=60_000)  # a file is under way

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#job-status")).to_have_text("Paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#job-status")).to_have_text(re.compile("Queued|Running"))
    page.get_by_label("max_speed (KB/s)").fill("")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("Speed limit removed.")).to_be_visible()

    expect(page.locator("#job-status")).to_have_text("Completed", timeout=FINISH_MS)
    expect(page.locator("#job-files")).to_have_text(f"{DEMO_FILES} of {DEMO_FILES} done")
    job = TransferJob.objects.get()
    assert (job.status, job.files_done, job.bytes_done) == ("completed", DEMO_FILES, job.bytes_total)
