"""The job page's truth below the browser: one place for the state rules (TransferJob), figures that
neither fall back at a resume nor claim a speed nothing earned, a run that stops by itself with files
unsent, a cancel of a failed job, and one finishing event per run end (issue 6 items 7, 11, 12)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from transfers import execution, progress, services, tasks, views
from transfers.engine.events import BytesSent, FileFinished, FileStarted
from transfers.engine.runner import RunSummary
from transfers.models import AuditEvent, FarmAccount, Membership, Team, TransferItem, TransferJob

pytestmark = pytest.mark.django_db

S = TransferJob.Status
FULL = "destination full: needs 40.0 MB, has 2.0 MB on input storage"


@pytest.fixture
def lead():
    user = get_user_model().objects.create_user("lead", password="pw-lead-123")
    Membership.objects.create(user=user, team=Team.objects.get_or_create(name="Studio")[0], role=Membership.Role.LEAD)
    return user


@pytest.fixture
def enqueued(monkeypatch) -> dict[str, list[int]]:
    """Job ids handed to the worker queue (no worker runs in these tests)."""
    ids: dict[str, list[int]] = {"run": [], "discard": []}
    monkeypatch.setattr(tasks.run_job, "delay", ids["run"].append)
    monkeypatch.setattr(tasks.discard_partials, "delay", ids["discard"].append)
    return ids


@pytest.fixture
def published(monkeypatch) -> list[dict]:
    messages: list[dict] = []
    monkeypatch.setattr(progress, "_send", lambda groups, message: messages.append(dict(message)))
    return messages


def _job(lead, status: str = S.RUNNING, states: tuple[str, ...] = (), size: int = 1000, **fields) -> TransferJob:
    job = TransferJob.objects.create(
        account=FarmAccount.objects.create(
            name=f"farm-{TransferJob.objects.count()}", team=Team.objects.get_or_create(name="Studio")[0]
        ),
        created_by=lead,
        status=status,
        files_total=len(states),
        bytes_total=size * len(states),
        **fields,
    )
    TransferItem.objects.bulk_create(
        TransferItem(job=job, number=n, local=f"/l/{n}", server=f"/s/{n}", size=size, state=state,
                     bytes_done=size if state in ("done", "skipped") else 0)
        for n, state in enumerate(states, start=1)
    )  # fmt: skip
    services.job_recount(job_id=job.pk)
    job.refresh_from_db()
    return job


def _events(job: TransferJob, action: str = "job.finish") -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, target_id=str(job.pk)).order_by("pk"))


class Throttle:
    def __init__(self) -> None:
        self.offered: list[dict] = []

    def offer(self, message: dict) -> bool:
        self.offered.append(message)
        return True

    def flush(self) -> None:
        pass

    def discard(self) -> None:
        pass


def _recorder(job: TransferJob) -> execution._Recorder:
    services.job_recount(job_id=job.pk)
    job.refresh_from_db()
    recorder = execution._Recorder(job, [])  # type: ignore[arg-type]
    for item in job.items.filter(state=TransferItem.State.PENDING):
        recorder.track(item.pk, item.server, item.size)  # as the engine is handed each pending item
    return recorder


# --- the state rules live on the model ---------------------------------------------------------------


def test_every_user_action_is_a_transition_the_model_allows():
    for action, (to, sources) in TransferJob.ACTIONS.items():
        assert sources and all(to in TransferJob.TRANSITIONS[source] for source in sources), action


@pytest.mark.parametrize(
    ("status", "actions"),
    [
        (S.QUEUED, ["cancel"]),
        (S.RUNNING, ["pause", "cancel"]),
        (S.PAUSED, ["resume", "cancel"]),
        (S.FAILED, ["cancel", "retry"]),
        (S.COMPLETED_WITH_ERRORS, ["cancel", "retry"]),
        (S.COMPLETED, []),
        (S.CANCELLED, []),
    ],
)
def test_the_actions_a_job_allows_follow_its_status(status, actions):
    job = TransferJob(status=status)

    assert job.actions == actions
    assert all(job.can(a) for a in actions) and not job.can("explode")


def test_the_live_state_carries_label_actions_flags_and_figures(lead):
    job = _job(lead, S.PAUSED, ("done", "pending", "failed"))

    live = job.as_live()

    assert {k: live[k] for k in ("status", "label", "actions", "running", "terminal", "settled")} == {
        "status": "paused", "label": "Paused", "actions": ["resume", "cancel"],
        "running": False, "terminal": False, "settled": False,
    }  # fmt: skip
    assert json.loads(json.dumps(live)) == live  # it goes through json_script and the channel layer as is


def test_a_terminal_job_counts_its_unsent_files_as_not_sent(lead):
    job = _job(lead, S.FAILED, ("done", "pending", "pending", "failed"))

    assert (job.files_done, job.files_failed, job.files_not_sent) == (1, 1, 2)


def test_a_job_that_sent_nothing_claims_no_average_speed(lead):
    start = timezone.now()
    job = _job(lead, S.COMPLETED, ("skipped",) * 3, started_at=start, finished_at=start + timedelta(seconds=2))

    assert job.bytes_done == 3000  # everything is there...
    assert job.average_speed is None  # ...but nothing moved: no speed to claim


def test_the_average_speed_is_over_the_bytes_really_sent(lead):
    start = timezone.now()
    job = _job(lead, S.COMPLETED, ("done",) * 4, started_at=start, finished_at=start + timedelta(seconds=2), bytes_sent=1000)

    assert job.average_speed == 500.0


def test_the_api_serves_the_same_live_state_as_the_page(client, lead):
    client.force_login(lead)
    job = _job(lead, S.FAILED, ("done", "pending"), finished_at=timezone.now())

    body = client.get(f"/api/jobs/{job.pk}/").json()
    page = client.get(reverse("job-detail", args=[job.pk])).content.decode()

    assert (body["actions"], body["files_not_sent"]) == (["cancel", "retry"], 1)
    embedded = re.search(r'<script id="job-state" type="application/json">(.*?)</script>', page, re.S)
    assert embedded and json.loads(embedded.group(1)) == body["live"]


def test_the_job_page_has_no_inline_script_and_shows_only_the_allowed_controls(client, lead):
    client.force_login(lead)
    job = _job(lead, S.PAUSED, ("pending",))

    page = client.get(reverse("job-detail", args=[job.pk])).content.decode()

    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert all("src=" in attrs or 'type="application/json"' in attrs for attrs, _ in scripts)
    forms = dict(re.findall(r'<form [^>]*data-action="(\w+)"([^>]*)>', page))
    assert {action for action, rest in forms.items() if "hidden" not in rest} == {"resume", "cancel"}
    assert set(forms) == set(TransferJob.ACTIONS) == set(views.JOB_ACTIONS)


# --- figures -----------------------------------------------------------------------------------------


def test_progress_messages_carry_figures_but_no_status(lead):
    recorder = _recorder(_job(lead, S.RUNNING, ("pending", "pending")))
    item = recorder.job.items.first()

    recorder(FileStarted(item.pk, 1000))
    recorder(BytesSent(item.pk, 1000))
    recorder(FileFinished(item.pk, ok=True, size=1000))
    message = recorder.message()

    assert "status" not in message
    assert (message["files_done"], message["bytes_done"], message["percent"]) == (1, 1000, 50)
    assert message["figures_at"] is not None


def test_unchanged_files_reported_together_are_counted_and_stored_as_skipped(lead):
    job = _job(lead, S.RUNNING, ("pending", "pending", "pending"))
    recorder = _recorder(job)
    first, second, third = job.items.order_by("pk")

    recorder.report_many([FileFinished(i.pk, ok=True, size=1000, checksum="xxh3-128:ab", skipped=True) for i in (first, second)])
    recorder(FileFinished(third.pk, ok=True, size=1000))
    message = recorder.message()
    recorder.write()

    assert (message["files_done"], message["files_skipped"], message["bytes_done"]) == (3, 2, 3000)
    states = dict(TransferItem.objects.filter(job=job).values_list("pk", "state"))
    assert states == {first.pk: "skipped", second.pk: "skipped", third.pk: "done"}
    assert TransferItem.objects.get(pk=first.pk).checksum == "xxh3-128:ab"


def test_a_resumed_run_starts_from_the_partial_bytes_and_counts_them_once(lead):
    job = _job(lead, S.RUNNING, ("done", "pending"))
    partial = job.items.get(state="pending")
    TransferItem.objects.filter(pk=partial.pk).update(bytes_done=600)  # stored by the run that was paused
    recorder = _recorder(job)
    shown = []

    def figure() -> int:
        shown.append(recorder.message()["bytes_done"])
        return shown[-1]

    assert job.bytes_done == figure() == 1600  # the database and the first message agree
    recorder(FileStarted(partial.pk, 1000))
    figure()
    recorder(BytesSent(partial.pk, 600, resumed=True))  # the engine verified the partial
    figure()
    recorder(BytesSent(partial.pk, 400))
    figure()
    recorder(FileFinished(partial.pk, ok=True, size=1000, resumed=600))

    assert shown == [1600, 1600, 1600, 2000] and figure() == 2000


def test_the_figures_stored_each_second_keep_the_partial_bytes_of_files_under_way(lead):
    job = _job(lead, S.RUNNING, ("pending", "pending"))
    recorder = _recorder(job)
    item = job.items.first()
    recorder(FileStarted(item.pk, 1000))
    recorder(BytesSent(item.pk, 300))

    recorder.write()
    services.job_recount(job_id=job.pk)  # what a resume does first
    job.refresh_from_db()

    assert (TransferItem.objects.get(pk=item.pk).bytes_done, job.bytes_done, job.bytes_sent) == (300, 300, 300)


# --- the end of a run --------------------------------------------------------------------------------


def _finish(job: TransferJob, summary: RunSummary) -> None:
    recorder = _recorder(job)
    execution._finish(job, recorder, Throttle(), summary)  # type: ignore[arg-type]


def test_a_run_that_stopped_itself_with_files_unsent_fails_and_says_how_many(lead, django_capture_on_commit_callbacks):
    job = _job(lead, S.RUNNING, ("done", "pending", "pending", "pending"))

    with django_capture_on_commit_callbacks():
        _finish(job, RunSummary(1, 0, 0, 1000, stopped=True, stop_reason=FULL))

    job.refresh_from_db()
    assert job.status == S.FAILED  # never "completed with errors": no file failed, three were never tried
    assert job.error == f"{FULL}: 3 files not sent; free space and press Retry"
    assert (job.files_not_sent, job.finished_at is not None) == (3, True)
    assert [(e.outcome, e.after["files_not_sent"]) for e in _events(job)] == [("failed", 3)]


def test_a_run_with_failures_and_nothing_unsent_is_completed_with_errors(lead):
    job = _job(lead, S.RUNNING, ("done", "failed"))

    _finish(job, RunSummary(1, 1, 0, 1000, stopped=False))

    job.refresh_from_db()
    assert (job.status, job.error) == (S.COMPLETED_WITH_ERRORS, "")


def test_a_failed_job_can_be_cancelled_and_its_partials_are_discarded(lead, enqueued, django_capture_on_commit_callbacks):
    job = _job(lead, S.FAILED, ("done", "pending"), finished_at=timezone.now() - timedelta(minutes=5))

    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_cancel(job=job, user=lead)

    job.refresh_from_db()
    assert (job.status, job.settled, enqueued["discard"]) == (S.CANCELLED, True, [job.pk])
    assert [e.outcome for e in _events(job)] == ["cancelled"]


def test_retry_of_a_stopped_job_sends_the_unsent_files_from_their_partials_and_the_failed_again(
    lead, enqueued, django_capture_on_commit_callbacks
):
    job = _job(lead, S.FAILED, ("done", "pending", "failed"), error=FULL)
    pending = job.items.get(state="pending")
    TransferItem.objects.filter(pk=pending.pk).update(bytes_done=250)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_retry(job=job, user=lead)
    job.refresh_from_db()
    assert (job.status, job.prepared) == (S.QUEUED, False)  # the worker sets the failed files pending
    assert services.job_prepare(job_id=job.pk)
    services.job_recount(job_id=job.pk)

    job.refresh_from_db()
    assert sorted(job.items.values_list("state", "bytes_done")) == [("done", 1000), ("pending", 0), ("pending", 250)]
    assert (job.status, job.error, job.bytes_done, job.files_not_sent, enqueued["run"]) == (S.QUEUED, "", 1250, 2, [job.pk])


def test_a_user_cancelling_a_running_job_leaves_its_end_to_the_worker(lead, enqueued):
    job = _job(lead, S.RUNNING, ("done", "pending"))

    assert services.job_cancel(job=job, user=lead)

    job.refresh_from_db()
    assert (job.status, job.finished_at, job.settled) == (S.CANCELLED, None, False)
    assert _events(job) == []


def test_a_run_stopped_by_a_cancel_writes_one_finish_event_and_tells_the_page_its_final_figures(
    lead, enqueued, published, django_capture_on_commit_callbacks
):
    job = _job(lead, S.RUNNING, ("done", "pending"))
    services.job_cancel(job=job, user=lead)

    with django_capture_on_commit_callbacks(execute=True):
        _finish(job, RunSummary(0, 0, 0, 0, stopped=True, stop_reason="cancelled by a user"))
        execution.job_stopped(job_id=job.pk, status=S.CANCELLED)  # a second word on the same end changes nothing

    job.refresh_from_db()
    assert job.settled
    assert [(e.outcome, e.after["files_done"], e.after["files_not_sent"]) for e in _events(job)] == [("cancelled", 1, 1)]
    (state,) = [m for m in published if m["type"] == "job.state"]
    assert (state["status"], state["live"]["settled"], state["live"]["files_done"]) == ("cancelled", True, 1)


def test_a_run_stopped_by_a_pause_writes_a_paused_finish_event(lead, published, django_capture_on_commit_callbacks):
    job = _job(lead, S.RUNNING, ("done", "pending"))
    services.job_pause(job=job, user=lead)

    with django_capture_on_commit_callbacks(execute=True):
        _finish(job, RunSummary(0, 0, 0, 0, stopped=True, stop_reason="paused by a user"))

    assert [e.outcome for e in _events(job)] == ["paused"]
    assert [m["live"]["actions"] for m in published if m["type"] == "job.state"][-1] == ["resume", "cancel"]


def test_the_page_action_cancels_a_failed_job(client, lead, enqueued):
    client.force_login(lead)
    job = _job(lead, S.FAILED, ("pending",), finished_at=timezone.now())

    client.post(reverse("job-action", args=[job.pk, "cancel"]))

    job.refresh_from_db()
    assert job.status == S.CANCELLED


def test_the_job_list_shows_the_files_a_stopped_job_did_not_send(client, lead):
    client.force_login(lead)
    _job(lead, S.FAILED, ("done", "pending", "pending"), finished_at=timezone.now())

    page = client.get(reverse("job-list")).content.decode()

    assert "1/3 (2 not sent)" in page


def test_discarding_a_cancelled_job_s_partials_finishes_a_job_whose_run_died(lead, monkeypatch, tmp_path):
    job = _job(lead, S.CANCELLED, ("done", "pending", "failed"))  # cancelled while running; its worker never came back
    TransferItem.objects.filter(job=job, state="failed").update(server="../../outside")  # refused by the storage
    monkeypatch.setattr("django.conf.settings.FARM_ROOT", str(tmp_path))

    execution.job_discard_partials(job_id=job.pk)

    job.refresh_from_db()
    assert job.settled
    assert [e.outcome for e in _events(job)] == ["cancelled"]
