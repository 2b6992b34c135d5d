"""The studio dashboard in Chromium (issue 8 items 4 and 9): live on a second screen while a lead's job runs,
and a kiosk screen that comes back by itself after daphne restarts."""

from __future__ import annotations

import re
import sys
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Service, _free_port, _start, wait_for
from transfers import kiosks
from transfers.demo import demo_ensure
from transfers.models import BandwidthBudget, FarmAccount, Membership, Team, TransferJob
from transfers.progress import JobProgress, ProgressThrottle

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pw-4711"
JOB_URL = re.compile(r"/jobs/(\d+)/$")
FINISH_MS = 120_000


def _context_page(browser: Browser, url: str) -> Iterator[Page]:
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the site's CSP (no eval) refuses.
    context = browser.new_context(base_url=url, bypass_csp=True)
    yield context.new_page()
    context.close()


@pytest.fixture
def lead_page(browser: Browser, daphne_server: Service) -> Iterator[Page]:
    yield from _context_page(browser, daphne_server.url)


@pytest.fixture
def wall_page(browser: Browser, daphne_server: Service) -> Iterator[Page]:
    yield from _context_page(browser, daphne_server.url)


def _log_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Manifests")).to_be_visible()


def _percent(page: Page, job_id: int) -> int:
    text = page.locator(f"#dash-uploads tr[data-job='{job_id}'] .pct").text_content(timeout=5_000) or ""
    return int(text.split("%")[0])


def test_the_dashboard_follows_a_job_live_on_a_second_screen(lead_page: Page, wall_page: Page, celery_worker: Service) -> None:
    users = get_user_model().objects
    manifest = demo_ensure()
    for name, role in (("lead", Membership.Role.LEAD), ("viewer", Membership.Role.VIEWER)):
        Membership.objects.create(user=users.create_user(name, password=PASSWORD), team=manifest.account.team, role=role)
    other = Team.objects.create(name="elsewhere")
    elsewhere_farm = FarmAccount.objects.create(name="elsewhere-farm", team=other)
    elsewhere = TransferJob.objects.create(account=elsewhere_farm, status="running")
    BandwidthBudget.objects.create(scope=BandwidthBudget.Scope.STUDIO, max_speed=100_000)  # shown, never the limit here

    # The second screen: a viewer's dashboard, open before anything runs.
    _log_in(wall_page, "viewer")
    wall_page.goto("/dashboard/")
    expect(wall_page.locator("#dash-live")).to_have_text("live")
    expect(wall_page.locator("#dash-uploads-none")).to_be_visible()
    wall_page.evaluate("window.__rvwebMarker = 'same page'")

    # The lead starts the demo upload, slowed down so that it runs for ~15 s.
    _log_in(lead_page, "lead")
    lead_page.get_by_role("link", name="Manifests").click()
    lead_page.get_by_role("link", name=manifest.name).click()
    lead_page.get_by_text("Upload options").click()
    lead_page.get_by_label("max_speed (KB/s)").fill("3072")
    lead_page.get_by_role("button", name="Upload", exact=True).click()
    expect(lead_page).to_have_url(JOB_URL)
    job_id = int(JOB_URL.search(lead_page.url).group(1))  # type: ignore[union-attr]

    # The wall shows it without a reload: the row, its status, its progress growing, the speed.
    row = wall_page.locator(f"#dash-uploads tr[data-job='{job_id}']")
    expect(row).to_be_visible(timeout=30_000)
    expect(row.locator(".status")).to_have_text("Running", timeout=60_000)
    wall_page.wait_for_function(
        f"parseInt(document.querySelector(\"#dash-uploads tr[data-job='{job_id}'] .pct\").textContent, 10) >= 10",
        timeout=FINISH_MS,
    )
    first = _percent(wall_page, job_id)
    expect(wall_page.locator("#dash-speed")).to_have_text(re.compile(r"^[\d.]+ [KM]B/s$"))
    expect(wall_page.locator("#dash-counts")).to_have_text(re.compile(r"^1 uploading"))
    # The shared budget, live: its limit, its use, and who uses it.
    budget = wall_page.locator("#dash-budgets tr", has_text="the studio")
    expect(budget).to_contain_text("97.7 MB/s")
    expect(budget).to_contain_text(f"job {job_id} ({manifest.account.name})", timeout=30_000)
    wall_page.wait_for_function(
        f"""(() => {{ const cell = document.querySelector("#dash-uploads tr[data-job='{job_id}'] .pct");
             return !cell || parseInt(cell.textContent, 10) > {first}; }})()""",
        timeout=FINISH_MS,
    )

    # Done: it leaves the active list, today's bytes count it; never a word of the other team's job.
    expect(lead_page.locator("#job-status")).to_have_text("Completed", timeout=FINISH_MS)
    expect(row).to_have_count(0, timeout=10_000)
    expect(wall_page.locator("#dash-uploads-none")).to_be_visible()
    expect(wall_page.locator("#dash-today")).to_have_text(re.compile(r"^[1-9][\d.]* MB$"))
    expect(wall_page.locator(f"tr[data-job='{elsewhere.pk}']")).to_have_count(0)
    assert wall_page.evaluate("window.__rvwebMarker") == "same page", "the dashboard was reloaded"


# --- a kiosk across a daphne restart ------------------------------------------------------------------------


class _Daphne:
    """A daphne of this test's own on a fixed port, so that it can be stopped and started again there."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.service: Service | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "rvweb.asgi:application"]
        self.service = _start(args, "daphne-kiosk")
        wait_for(self._healthy, timeout=60, what="daphne /healthz")

    def _healthy(self) -> bool:
        assert self.service is not None
        if self.service.process.poll() is not None:
            pytest.fail(f"daphne exited:\n{self.service.log_tail()}")
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()


@pytest.fixture
def own_daphne(daphne_server: Service) -> Iterator[_Daphne]:
    # daphne_server: the session's test database is set up, migrated and shared with subprocesses.
    server = _Daphne()
    server.start()
    yield server
    server.stop()


def _progress(job: TransferJob, bytes_done: int) -> JobProgress:
    return JobProgress(
        type="job.progress", job=job.pk, percent=bytes_done, files_total=1, files_done=0, files_skipped=0,
        files_failed=0, files_not_sent=1, bytes_total=100, bytes_done=bytes_done, bytes_sent=bytes_done,
        figures_at=timezone.now().timestamp(), speed=2048.0, eta=1.0, active=[],
    )  # fmt: skip


def _publish_like_a_worker(job: TransferJob, team: Team, bytes_done: int) -> None:
    """From another thread, as a worker would: Playwright's event loop runs in this one (async_to_sync refuses it)."""
    publisher = threading.Thread(target=ProgressThrottle(job.pk, team_id=team.pk).offer, args=(_progress(job, bytes_done),))
    publisher.start()
    publisher.join()


def _kiosk_job() -> tuple[Any, TransferJob, str]:
    team = Team.objects.create(name="lighting")
    lead = get_user_model().objects.create_user("lighting-lead")
    Membership.objects.create(user=lead, team=team, role=Membership.Role.LEAD)
    account = FarmAccount.objects.create(name="lighting-farm", team=team)
    job = TransferJob.objects.create(
        account=account, status="running", started_at=timezone.now(), files_total=1, bytes_total=100, bytes_done=10
    )
    _, token = kiosks.kiosk_create(team=team, name="lighting wall", user=lead)
    return team, job, token


def test_a_kiosk_screen_comes_back_by_itself_after_daphne_restarts(browser: Browser, own_daphne: _Daphne) -> None:
    team, job, token = _kiosk_job()
    context = browser.new_context(base_url=own_daphne.url, bypass_csp=True)
    page = context.new_page()
    page.goto(f"/kiosk/#{token}")
    percent = page.locator(f"#dash-uploads tr[data-job='{job.pk}'] .pct")
    expect(page.locator("#dash-live")).to_have_text("live")
    expect(page.locator("#dash-title")).to_have_text("lighting · lighting wall")
    expect(percent).to_have_text(re.compile(r"^10% "))
    assert page.locator("form, nav, a[href^='/jobs/']").count() == 0  # read-only: no controls, no way in
    page.evaluate("window.__rvwebMarker = 'same page'")

    own_daphne.stop()
    expect(page.locator("#dash-live")).to_have_text("connection lost; reconnecting…", timeout=10_000)
    TransferJob.objects.filter(pk=job.pk).update(bytes_done=50)  # said while the screen was away
    own_daphne.start()

    # Back by itself, with what it missed (fetched again), then live again.
    expect(page.locator("#dash-live")).to_have_text("live", timeout=30_000)
    expect(percent).to_have_text(re.compile(r"^50% "), timeout=10_000)
    assert page.locator("#dashboard").get_attribute("data-connected") == "2"
    _publish_like_a_worker(job, team, 70)
    expect(percent).to_have_text(re.compile(r"^70% "), timeout=10_000)
    expect(page.locator("#dash-speed")).to_have_text("2.0 KB/s")
    assert page.evaluate("window.__rvwebMarker") == "same page", "the kiosk page was reloaded"
    context.close()


def test_a_kiosk_screen_goes_dark_when_its_link_is_revoked(browser: Browser, daphne_server: Service) -> None:
    _, _, token = _kiosk_job()
    context = browser.new_context(base_url=daphne_server.url)
    page = context.new_page()
    page.goto(f"/kiosk/#{token}")
    expect(page.locator("#dash-live")).to_have_text("live")

    kiosk = kiosks.kiosk_from_token(token)
    assert kiosk is not None
    revoker = threading.Thread(target=kiosks.kiosk_revoke, kwargs={"kiosk": kiosk, "user": None})  # as a request would
    revoker.start()
    revoker.join()

    expect(page.locator("#dash-live")).to_have_text("this kiosk link is not valid or was revoked", timeout=10_000)
    page.reload()  # and it stays dark
    expect(page.locator("#dash-live")).to_have_text("this kiosk link is not valid or was revoked", timeout=10_000)
    context.close()


def test_a_kiosk_screen_with_a_forged_link_shows_nothing(browser: Browser, daphne_server: Service) -> None:
    _, _, token = _kiosk_job()
    context = browser.new_context(base_url=daphne_server.url)
    page = context.new_page()

    page.goto(f"/kiosk/#{token[:-4]}AAAA")

    expect(page.locator("#dash-live")).to_have_text("this kiosk link is not valid or was revoked", timeout=10_000)
    expect(page.locator("#dash-uploads tr")).to_have_count(0)
    context.close()
