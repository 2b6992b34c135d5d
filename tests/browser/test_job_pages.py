"""The job pages as a lead and a viewer see them: a lead keeps the transfers list open in one tab,
starts an upload from the new-job form in another, and the list shows it running and finishing without
a reload; on the job page the speed chart draws and the per-file table filters. A viewer gets no form."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from tests.conftest import Service
from transfers.demo import DEMO_FILES, DEMO_MANIFEST, demo_ensure
from transfers.models import JobSample, Membership, TransferJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pw-4711"
JOB_URL = re.compile(r"/jobs/(\d+)/$")
FINISH_MS = 120_000
SLOW_KBPS = "8000"  # the demo's ~50 MB in ~6 s: long enough for speed samples and live rows

RECORD_ROW_JS = """() => {
  window.__rvwebMarker = 'same page';
  window.__statusesSeen = [];
  const known = new Set([...document.querySelectorAll('tr[data-job]')].map((row) => row.dataset.job));
  const note = () => {
    for (const cell of document.querySelectorAll('tr[data-job] .status')) {
      if (!known.has(cell.closest('tr').dataset.job)) window.__statusesSeen.push(cell.textContent);
    }
  };
  new MutationObserver(note).observe(document.getElementById('job-rows'), {childList: true, subtree: true});
}"""


def _user(role: str, username: str) -> None:
    manifest = demo_ensure()
    user = get_user_model().objects.create_user(username, password=PASSWORD)
    Membership.objects.create(user=user, team=manifest.account.team, role=role)


def _log_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Manifests")).to_be_visible()


def test_a_lead_starts_a_job_from_the_form_and_watches_the_list_chart_and_files(page: Page, celery_worker: Service) -> None:
    _user(Membership.Role.LEAD, "lead")
    _log_in(page, "lead")
    page.get_by_role("link", name="Transfers").click()
    expect(page.get_by_role("heading", name="Transfers")).to_be_visible()
    page.evaluate(RECORD_ROW_JS)  # the statuses of rows that were not there yet (ids need not be consecutive)

    form_page = page.context.new_page()
    form_page.goto("/jobs/")
    form_page.get_by_role("link", name="New job", exact=True).click()
    form_page.get_by_label("Kind").select_option("upload_asset")  # loads that kind's options
    expect(form_page.locator('select[name="manifest"]')).to_be_visible()
    form_page.get_by_label("Manifest").select_option(label=DEMO_MANIFEST)
    form_page.get_by_label("max_speed").fill(SLOW_KBPS)
    form_page.get_by_label("is_db").uncheck()  # send every file, whatever an earlier test sent
    form_page.get_by_role("button", name="Start the job").click()
    expect(form_page).to_have_url(JOB_URL)
    job_id = int(JOB_URL.search(form_page.url).group(1))  # type: ignore[union-attr]
    job = TransferJob.objects.get(pk=job_id)
    assert (job.kind, job.options["max_speed"], job.options["is_db"]) == ("upload_asset", int(SLOW_KBPS), False)

    # The list, open since before the job existed, shows it and follows it to the end.
    row = page.locator(f'tr[data-job="{job_id}"]')
    expect(row).to_be_visible(timeout=10_000)
    expect(row.locator(".status")).to_have_text("Completed", timeout=FINISH_MS)
    expect(row.locator(".job-percent")).to_have_text("100%")
    assert page.evaluate("window.__rvwebMarker") == "same page", "the list was reloaded"
    seen = page.evaluate("window.__statusesSeen")
    assert "Running" in seen or "Queued" in seen, f"the row never showed the job under way: {seen}"

    # The job page: the chart drew (samples and live points), the per-file table filters.
    expect(form_page.locator("#job-status")).to_have_text("Completed", timeout=FINISH_MS)
    expect(form_page.locator("#job-chart canvas").first).to_be_visible()
    assert int(form_page.locator("#job-chart").get_attribute("data-points") or 0) >= 2
    samples = JobSample.objects.filter(job_id=job_id).count()
    assert samples >= 1, "the worker recorded no speed sample"
    form_page.reload()  # drawn on load from the worker's samples, this time
    expect(form_page.locator("#job-chart canvas").first).to_be_visible()
    expect(form_page.locator("#job-chart")).to_have_attribute("data-points", str(samples))
    files = form_page.locator("#file-rows tr")
    expect(files).to_have_count(100)  # the first page
    expect(form_page.locator("#file-more")).to_be_visible()
    form_page.get_by_label("Show").select_option("failed")
    expect(files).to_have_count(1)
    expect(files.first).to_have_text("No files here.")
    form_page.get_by_label("Show").select_option("done")
    expect(files).to_have_count(100)
    expect(form_page.locator('#file-rows tr[data-state="done"]')).to_have_count(100)
    name = PurePosixPath(job.items.order_by("number").values_list("local", flat=True)[DEMO_FILES - 1]).name
    form_page.get_by_label("Path contains").fill(name)
    form_page.get_by_role("button", name="Search").click()
    expect(files).to_have_count(1)
    expect(files.first.locator("td").nth(1)).to_contain_text(name)


def test_a_viewer_sees_the_list_but_no_form(page: Page) -> None:
    _user(Membership.Role.VIEWER, "viewer")
    _log_in(page, "viewer")
    page.get_by_role("link", name="Transfers").click()

    expect(page.get_by_role("heading", name="Transfers")).to_be_visible()
    expect(page.get_by_role("link", name="New job", exact=True)).to_have_count(0)
    page.goto("/jobs/new")
    expect(page.locator(".message.error")).to_contain_text("member or lead role")
    expect(page.locator("#job-form")).to_have_count(0)
