"""The live job page tells what the database and the API say, with controls that match the job's state,
without a reload (issue 6 item 11): Chromium against daphne and a real worker, on the demo upload."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Service, wait_for
from transfers.demo import DEMO_FILES, DEMO_MANIFEST, demo_ensure
from transfers.models import AuditEvent, Membership, TransferJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pw-4711"
JOB_URL = re.compile(r"/jobs/(\d+)/$")
FINISH_MS = 120_000
FILES = re.compile(r"^(\d+) of (\d+) done")

# Every change of the figures as the page showed them, (files text, percent), from the page's first
# paint (kept in sessionStorage: a reload, which should not happen, would not lose the record).
RECORD_FIGURES = """document.addEventListener("DOMContentLoaded", () => {
  if (!document.getElementById("job-files")) return;
  const take = () => {
    const seen = JSON.parse(sessionStorage.getItem("figures") || "[]");
    seen.push([document.getElementById("job-files").textContent,
               parseInt(document.getElementById("job-percent").textContent, 10)]);
    sessionStorage.setItem("figures", JSON.stringify(seen));
  };
  take();
  const observer = new MutationObserver(take);
  for (const id of ["job-files", "job-percent"]) {
    observer.observe(document.getElementById(id), { childList: true, characterData: true, subtree: true });
  }
});"""


def _mark_page(page: Page) -> None:
    page.evaluate("window.__rvwebMarker = 'same page'")


def _expect_same_page(page: Page) -> None:
    assert page.evaluate("window.__rvwebMarker") == "same page", "the job page was reloaded"


@pytest.fixture
def page(browser: Browser, daphne_server: Service) -> Iterator[Page]:
    """As the shared fixture, but Playwright's wait_for_function evaluates its predicates as strings,
    which the site's content security policy (no eval) refuses; the pages' own scripts are unaffected."""
    context = browser.new_context(base_url=daphne_server.url, bypass_csp=True)
    yield context.new_page()
    context.close()


@pytest.fixture
def user() -> str:
    user = get_user_model().objects.create_user("lead", password=PASSWORD)
    manifest = demo_ensure()
    Membership.objects.create(user=user, team=manifest.account.team, role=Membership.Role.LEAD)
    return "lead"


def _log_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Manifests")).to_be_visible()


def _upload(page: Page, max_speed: int | None = None) -> int:
    """From the manifest list to the page of a new demo upload; the job's id."""
    page.get_by_role("link", name="Manifests").click()
    page.get_by_role("link", name=DEMO_MANIFEST).click()
    if max_speed:
        page.get_by_text("Upload options").click()
        page.get_by_label("max_speed (KB/s)").fill(str(max_speed))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page).to_have_url(JOB_URL)
    return int(JOB_URL.search(page.url).group(1))  # type: ignore[union-attr]


def _button(page: Page, name: str):  # a Playwright locator
    return page.locator("#job-actions").get_by_role("button", name=name, exact=True)


def _expect_buttons(page: Page, *shown: str) -> None:
    for name in ("Pause", "Resume", "Cancel", "Retry"):
        if name in shown:
            expect(_button(page, name)).to_be_visible()
        else:
            expect(_button(page, name)).to_be_hidden()


def _percent_at_least(page: Page, percent: int) -> None:
    page.wait_for_function(f"parseInt(document.getElementById('job-percent').textContent, 10) >= {percent}", timeout=FINISH_MS)


def _size(count: float) -> str:
    """job.js's size()."""
    units, unit = ["B", "KB", "MB", "GB", "TB"], 0
    while count >= 1024 and unit < len(units) - 1:
        count /= 1024
        unit += 1
    return f"{count:.{1 if unit else 0}f} {units[unit]}"


def test_the_controls_and_figures_follow_the_job_through_start_pause_resume_and_finish(
    page: Page, user: str, queue_held: Callable[[], AbstractContextManager[None]]
) -> None:
    page.add_init_script(RECORD_FIGURES)
    _log_in(page, user)
    with queue_held():
        job_id = _upload(page, max_speed=3072)  # ~15 s for the 46 MB demo
        expect(page.locator("#job-status")).to_have_text("Queued")
        _expect_buttons(page, "Cancel")
        expect(page.locator("#job-eta-figure")).to_be_hidden()
        expect(page.locator("#job-live")).to_have_text("live")
        _mark_page(page)

    # Running: Pause appears without a reload, with a live speed and an ETA.
    expect(_button(page, "Pause")).to_be_visible(timeout=60_000)
    expect(page.locator("#job-status")).to_have_text("Running")
    _expect_buttons(page, "Pause", "Cancel")
    expect(page.locator("#job-speed")).to_have_text(re.compile(r"^\d+(\.\d)? [KMG]?B/s$"), timeout=10_000)
    expect(page.locator("#job-eta-figure")).to_be_visible()
    _percent_at_least(page, 25)
    _expect_same_page(page)

    # Paused: said so, no speed, no ETA, Resume and Cancel; and still so once the worker has stopped.
    _button(page, "Pause").click()
    expect(page.locator("#job-status")).to_have_text("Paused")
    expect(page.get_by_text("Pausing: the worker stops within a second")).to_be_visible()
    wait_for(lambda: AuditEvent.objects.filter(action="job.finish", target_id=str(job_id), outcome="paused").exists(),
             timeout=30, what="the paused run to end")  # fmt: skip
    expect(page.locator("#job-status")).to_have_text("Paused")
    _expect_buttons(page, "Resume", "Cancel")
    expect(page.locator("#job-speed-figure")).to_be_hidden()
    expect(page.locator("#job-eta-figure")).to_be_hidden()
    expect(page.locator("#job-active")).to_be_hidden()

    _button(page, "Resume").click()
    expect(_button(page, "Pause")).to_be_visible(timeout=60_000)
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=FINISH_MS)

    # Finished: the end time and the average speed, no ETA, no speed limit to set, no controls.
    expect(page.locator("#job-files")).to_have_text(f"{DEMO_FILES} of {DEMO_FILES} done")
    expect(page.locator("#job-ran")).to_have_text(re.compile(r"^\S+ \u2013 \S+ \(\d+\.\d s\)$"))
    expect(page.locator("#job-speed")).to_have_text(re.compile(r"/s average$"))
    expect(page.locator("#job-eta-figure")).to_be_hidden()
    expect(page.locator("#job-speed-form")).to_be_hidden()
    _expect_buttons(page)
    _expect_same_page(page)

    figures = page.evaluate("JSON.parse(sessionStorage.getItem('figures'))")
    percents = [percent for _, percent in figures]
    assert percents == sorted(percents), f"the bar went back: {percents}"
    counts = [int(FILES.match(text).group(1)) for text, _ in figures]  # type: ignore[union-attr]
    # Files are counted as each arrives, with the bytes: never "0 of 300" at 31%.
    assert len(set(counts)) >= 20, counts
    assert all(abs(count / DEMO_FILES - percent / 100) <= 0.15 for count, percent in zip(counts, percents, strict=True)), figures


def test_a_cancelled_job_page_ends_with_the_figures_of_the_api(page: Page, user: str) -> None:
    _log_in(page, user)
    job_id = _upload(page, max_speed=1024)
    expect(_button(page, "Pause")).to_be_visible(timeout=60_000)
    _percent_at_least(page, 5)

    _button(page, "Cancel").click()
    expect(page.locator("#job-status")).to_have_text("Cancelled")
    wait_for(lambda: AuditEvent.objects.filter(action="job.finish", target_id=str(job_id)).exists(),
             timeout=30, what="the cancelled run to end")  # fmt: skip
    expect(page.locator("#job-live")).to_have_text("", timeout=10_000)  # settled: the final figures are in

    api = page.request.get(f"/api/jobs/{job_id}/").json()
    assert api["finished_at"] is not None
    expect(page.locator("#job-percent")).to_have_text(f"{api['percent']}%")
    expect(page.locator("#job-bytes")).to_have_text(f"{_size(api['bytes_done'])} of {_size(api['bytes_total'])}")
    files = f"{api['files_done']} of {api['files_total']} done"
    expect(page.locator("#job-files")).to_have_text(f"{files}, {api['files_not_sent']} not sent")
    _expect_buttons(page)
    assert TransferJob.objects.get(pk=job_id).bytes_done == api["bytes_done"]


def test_a_job_that_skipped_every_file_claims_no_speed(page: Page, user: str, celery_worker: object) -> None:
    _log_in(page, user)
    _upload(page)
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=FINISH_MS)

    _upload(page)  # the same files again: all unchanged, nothing to send

    expect(page.locator("#job-status")).to_have_text("Completed", timeout=FINISH_MS)
    expect(page.locator("#job-files")).to_have_text(f"{DEMO_FILES} of {DEMO_FILES} done ({DEMO_FILES} unchanged, skipped)")
    expect(page.locator("#job-speed")).to_have_text(f"— (nothing to send: {DEMO_FILES} unchanged)")
    page.reload()
    expect(page.locator("#job-speed")).to_have_text(f"— (nothing to send: {DEMO_FILES} unchanged)")
