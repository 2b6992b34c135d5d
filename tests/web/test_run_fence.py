"""Two runs of one job overlapping: after a Redis restart the lease is lost, and the run that takes the
job over may start while the old one is still stopping. The job's run token fences the old run off:
whatever it writes after the takeover (items, counters, its end) is refused, and the end is decided
from the items as the current run stored them (the flake of test_outage_e2e: a job whose 8 files had
all arrived ended completed_with_errors, its row saying 7 done and 0 failed)."""

from __future__ import annotations

import pytest

from transfers import execution, services
from transfers.engine.events import FileFinished
from transfers.engine.runner import Control, RunSummary
from transfers.models import FarmAccount, Team, TransferItem, TransferJob
from transfers.recorder import RunSuperseded

pytestmark = pytest.mark.django_db(transaction=True)

S = TransferJob.Status
FILES, SIZE = 8, 1000
DONE = RunSummary(files_ok=0, files_failed=0, files_skipped=0, bytes_sent=0, stopped=False)


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


def _job() -> TransferJob:
    account = FarmAccount.objects.create(name="farm", team=Team.objects.create(name="Studio"))
    job = TransferJob.objects.create(account=account, files_total=FILES, bytes_total=FILES * SIZE)
    TransferItem.objects.bulk_create(
        TransferItem(job=job, number=n, local=f"/l/{n}", server=f"/s/{n}", size=SIZE) for n in range(1, FILES + 1)
    )
    return job


def _run(job_id: int, token: str) -> execution._Recorder:
    """What job_run does up to its engine: start (or take over) the job as run `token`, count, record."""
    assert services.job_start(job_id=job_id, run_token=token)
    services.job_recount(job_id=job_id, owned_by=token)
    job = TransferJob.objects.get(pk=job_id)
    recorder = execution._Recorder(job, [])  # type: ignore[arg-type]
    for item in job.items.filter(state=TransferItem.State.PENDING):
        recorder.track(item.pk, item.server, item.size)
    return recorder


def _finished(recorder: execution._Recorder, item: TransferItem, *, ok: bool = True) -> None:
    error = {} if ok else {"error_code": "busy", "error": "another transfer is writing it right now"}
    recorder(FileFinished(item.pk, ok=ok, size=SIZE, checksum="c" * 32, **error))  # type: ignore[arg-type]


def _states(job: TransferJob) -> list[str]:
    return list(job.items.order_by("number").values_list("state", flat=True))


def test_a_run_taken_over_stores_nothing_more():
    job = _job()
    old = _run(job.pk, "old")
    items = list(job.items.order_by("number"))
    _finished(old, items[0])
    old.write()
    _run(job.pk, "new")  # Redis restarted empty: the next run holds the lease now

    _finished(old, items[1], ok=False)
    with pytest.raises(RunSuperseded):
        old.write()

    job.refresh_from_db()
    assert _states(job)[:2] == ["done", "pending"]
    assert (job.files_done, job.files_failed) == (1, 0)


def test_the_stale_run_finishing_last_changes_neither_the_items_nor_the_end():
    job = _job()
    old = _run(job.pk, "old")
    items = list(job.items.order_by("number"))
    for item in items[:4]:
        _finished(old, item)
    old.write()
    new = _run(job.pk, "new")
    for item in items[4:]:  # the new run sends the rest...
        _finished(new, item)
    _finished(old, items[4], ok=False)  # ...while the old one, still stopping, failed one of them
    new.write()
    execution._finish(new.job, new, Throttle(), DONE)  # type: ignore[arg-type]

    with pytest.raises(RunSuperseded):
        old.write()  # its last batch, after the new run has ended the job
    with pytest.raises(RunSuperseded):
        execution._finish(old.job, old, Throttle(), DONE)  # type: ignore[arg-type]

    job.refresh_from_db()
    assert (job.status, job.files_done, job.files_failed, job.error) == (S.COMPLETED, FILES, 0, "")
    assert _states(job) == ["done"] * FILES


def test_the_end_is_decided_by_the_current_run_from_its_items_not_by_the_stale_one():
    job = _job()
    old = _run(job.pk, "old")
    items = list(job.items.order_by("number"))
    for item in items[:7]:
        _finished(old, item)
    old.write()
    new = _run(job.pk, "new")
    _finished(old, items[7], ok=False)  # the old run's engine ends first, with a file the new run holds...
    with pytest.raises(RunSuperseded):
        old.write()
    with pytest.raises(RunSuperseded):
        execution._finish(old.job, old, Throttle(), DONE)  # type: ignore[arg-type]
    assert TransferJob.objects.get(pk=job.pk).status == S.RUNNING  # ...and ends nothing

    _finished(new, items[7])
    new.write()
    execution._finish(new.job, new, Throttle(), DONE)  # type: ignore[arg-type]

    job.refresh_from_db()
    assert (job.status, job.files_done, job.files_failed) == (S.COMPLETED, FILES, 0)


def test_a_run_that_sees_another_took_over_stops_at_once():
    job = _job()
    old = _run(job.pk, "old")
    control = Control()
    _run(job.pk, "new")

    with pytest.raises(RunSuperseded):
        execution._follow_user(old.job, old, control)

    assert control.stop.is_set()


def test_a_stale_run_that_hits_a_bug_does_not_fail_the_job_the_new_run_moves(monkeypatch):
    job = _job()
    _run(job.pk, "new")

    def taken_over_then_bug(job: TransferJob, lease: object) -> None:
        services.job_start(job_id=job.pk, run_token="newer")  # another run takes over mid-run
        raise ValueError("a bug")

    monkeypatch.setattr(execution, "_run", taken_over_then_bug)
    execution.job_run(job_id=job.pk)

    job.refresh_from_db()
    assert (job.status, job.error, job.run_token) == (S.RUNNING, "", "newer")


def test_every_start_gives_the_job_a_new_run_token():
    job = _job()

    services.job_start(job_id=job.pk)
    first = TransferJob.objects.get(pk=job.pk).run_token
    services.job_start(job_id=job.pk)

    assert first and TransferJob.objects.get(pk=job.pk).run_token not in ("", first)
