"""Downloads as a user sees them: a lead simulates a render on the farm page, starts an auto_download of
it from "Download frames", and watches on the job page (no reload) the files counter grow, the watcher
panel follow the task, and the job complete with every frame on disk, byte for byte. A viewer gets no
Download form; a local_path outside the allowed roots is refused on the farm page, not with a 500."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import xxhash
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from transfers.demo import DEMO_ACCOUNT, demo_ensure
from transfers.farm import connector_for
from transfers.models import FarmAccount, FarmTask, Membership, TransferJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pw-4711"
JOB_URL = re.compile(r"/jobs/(\d+)/$")
LAYERS, FRAMES = 2, 8
FINISH_MS = 90_000
SECONDS = "0.4"

# Records every text #job-files shows, so the test can tell that the counter went up in steps on this
# one page (not jumped from the first to the last figure, and not through a reload).
RECORD_FILES_JS = """() => {
  window.__rvwebMarker = 'same page';
  window.__filesSeen = [document.getElementById('job-files').textContent];
  new MutationObserver(() => window.__filesSeen.push(document.getElementById('job-files').textContent))
    .observe(document.getElementById('job-files'), {childList: true, characterData: true, subtree: true});
}"""


def _member(role: str, username: str) -> FarmAccount:
    account = demo_ensure().account
    user = get_user_model().objects.create_user(username, password=PASSWORD)
    Membership.objects.create(user=user, team=account.team, role=role)
    return account


def _log_in_to_farm_page(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Farm").click()
    page.get_by_role("link", name=DEMO_ACCOUNT).click()
    expect(page.get_by_role("heading", name=f"Render tasks of {DEMO_ACCOUNT}")).to_be_visible()


def _simulate(page: Page, scene: str) -> None:
    page.get_by_text("Simulate a render", exact=True).first.click()  # open the details
    page.get_by_label("Scene").fill(scene)
    page.get_by_label("Frames").fill(str(FRAMES))
    page.get_by_label("Layers (child tasks)").fill(str(LAYERS))
    page.get_by_label("Seconds per frame").fill(SECONDS)
    page.get_by_role("button", name="Simulate a render").click()
    expect(page.locator(".message.success")).to_contain_text("created")


def _fill_download(page: Page, task_id: int, local_path: str) -> None:
    page.get_by_text("Download frames", exact=True).click()  # open the details
    form = page.locator("#download-form")
    form.get_by_label("Kind").select_option("auto_download")
    form.get_by_label(re.compile(rf"(^|\s){task_id}\s")).check()  # "<id> <scene> (<status>)"
    form.get_by_label("Local path").fill(local_path)
    form.get_by_label("sleep_time (s between listings)").fill("0.5")


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _digest(path: Path) -> bytes:
    return xxhash.xxh3_128(path.read_bytes()).digest()


def test_a_lead_auto_downloads_a_simulated_render_and_watches_the_frames_arrive_live(
    page: Page, allowed_dir: Path, queue_held: Callable[[], AbstractContextManager[None]]
) -> None:
    account = _member(Membership.Role.LEAD, "lead")
    scene = f"dl_{uuid.uuid4().hex[:8]}"  # the farm folders outlive the test database: a fresh task folder
    local = allowed_dir / "frames"
    _log_in_to_farm_page(page, "lead")

    with queue_held():  # neither the render nor the download starts before the job page is watching
        _simulate(page, scene)
        task = FarmTask.objects.get(account=account, scene=scene, parent=None)
        _fill_download(page, task.task_id, str(local))
        page.get_by_role("button", name="Start the download").click()
        expect(page).to_have_url(JOB_URL)
        expect(page.get_by_role("heading", name=re.compile(r"^Job \d+: "))).to_contain_text("uto")
        expect(page.locator("#job-status")).to_have_text("Queued")
        expect(page.locator("#job-where")).to_contain_text(f"the outputs of task {task.task_id}")
        expect(page.locator("#job-where")).to_contain_text(str(local))
        expect(page.locator("#job-live")).to_have_text("live")
        page.evaluate(RECORD_FILES_JS)

    watch = page.locator("#job-watch")
    expect(watch).to_be_visible(timeout=FINISH_MS)
    expect(page.locator("#job-files-more")).to_be_visible()  # while it watches, the totals are not final
    expect(watch.locator("#watch-tasks tr").first.locator("td").first).to_have_text(str(task.task_id))
    expect(watch.locator("#watch-tasks tr").first.locator("td").nth(1)).not_to_be_empty()
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=FINISH_MS)
    expect(page.locator("#job-files")).to_have_text(f"{LAYERS * FRAMES} of {LAYERS * FRAMES} done")
    expect(page.locator("#job-files-more")).to_be_hidden()
    expect(watch.locator("#watch-tasks tr").first.locator("td").nth(4)).to_have_text("yes")
    expect(page.locator("#watch-next")).to_have_text("—")  # a finished watcher lists nothing more
    assert page.evaluate("window.__rvwebMarker") == "same page", "the job page was reloaded"

    seen = page.evaluate("window.__filesSeen")
    done_counts = sorted({int(text.split(" of ")[0]) for text in seen})
    assert any(0 < n < LAYERS * FRAMES for n in done_counts), f"the counter never showed a frame in between: {seen}"

    job = TransferJob.objects.get(pk=int(JOB_URL.search(page.url).group(1)))  # type: ignore[union-attr]
    assert (job.kind, job.status, job.files_done) == ("auto_download", TransferJob.Status.COMPLETED, LAYERS * FRAMES)
    output = connector_for(account).area_root("output")
    names = [name for name in _files(output) if name.startswith(f"{task.output_folder}/")]
    assert len(names) == LAYERS * FRAMES
    assert _files(local) == names, "every frame, nothing else: no .rvpart left behind"
    for name in names:
        assert _digest(local / name) == _digest(output / name), name
    assert not list(local.rglob("*.rvpart")) and not list(local.rglob(".*"))


def test_a_viewer_sees_the_tasks_but_no_download_form(page: Page, allowed_dir: Path) -> None:
    account = _member(Membership.Role.VIEWER, "viewer")
    FarmTask.objects.create(
        account=account, task_id=424242, scene="seen", output_folder="424242_seen", status=25, frames_expected=1
    )
    _log_in_to_farm_page(page, "viewer")

    expect(page.locator('tr[data-task="424242"]')).to_be_visible()
    expect(page.get_by_text("Download frames", exact=True)).to_have_count(0)
    expect(page.locator("#download-form")).to_have_count(0)
    expect(page.get_by_text("Simulate a render", exact=True)).to_have_count(0)


def test_a_local_path_outside_the_allowed_roots_is_refused_on_the_farm_page(page: Page) -> None:
    account = _member(Membership.Role.LEAD, "lead")
    FarmTask.objects.create(
        account=account, task_id=424243, scene="ended", output_folder="424243_ended", status=25, frames_expected=1
    )
    _log_in_to_farm_page(page, "lead")

    _fill_download(page, 424243, "/etc/rvweb-frames")
    page.get_by_role("button", name="Start the download").click()

    expect(page.get_by_role("heading", name=f"Render tasks of {DEMO_ACCOUNT}")).to_be_visible()
    expect(page.locator(".message.error")).to_contain_text("'/etc/rvweb-frames' is not under an allowed local root")
    expect(page.locator("#download-panel")).to_have_attribute("open", "")
    expect(page.locator("#download-form").get_by_label("Local path")).to_have_value("/etc/rvweb-frames")
    assert not TransferJob.objects.exists()
