"""A million entries without locking anyone out: the request records the job, the worker makes its items
in short batches, pending items are streamed, the recorder's writes are bounded, and so is its memory."""

from __future__ import annotations

import fcntl
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from transfers import execution, manifest_store, services, tasks
from transfers import recorder as recorder_module
from transfers.engine.events import FileFinished
from transfers.engine.manifest import ManifestInvalid
from transfers.models import FarmAccount, Manifest, ManifestEntry, TransferItem, TransferJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(team, make_user) -> Any:
    return make_user("lead", team=team, role="lead")


@pytest.fixture
def account(team, make_account) -> FarmAccount:
    return make_account(team, name="farm")


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    ids: list[int] = []
    monkeypatch.setattr(tasks.run_job, "delay", ids.append)
    return ids


@pytest.fixture
def unpaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_store, "pace", lambda started: None)


def _big_manifest(account: FarmAccount, allowed_dir: Path, count: int) -> Manifest:
    """`count` entries naming files that do not exist (they fail fast), stored directly."""
    manifest = Manifest.objects.create(name="big", account=account, entry_count=count, total_bytes=count * 10)
    ManifestEntry.objects.bulk_create(
        (
            ManifestEntry(manifest=manifest, number=n, local=f"{allowed_dir}/gone/{n}.exr", server=f"/D/{n}.exr", size=10)
            for n in range(1, count + 1)
        ),
        batch_size=2000,
    )
    return manifest


# --- the request only records the job -----------------------------------------------------------


def test_starting_an_upload_records_the_job_and_leaves_its_items_to_the_worker(
    account, allowed_dir, lead, enqueued, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    manifest = _big_manifest(account, allowed_dir, 3000)

    with django_assert_max_num_queries(6), django_capture_on_commit_callbacks(execute=True):
        job = services.job_create_upload(manifest=manifest, user=lead)

    assert not TransferItem.objects.exists()
    assert (job.prepared, job.items_prepared, job.files_total, job.bytes_total) == (False, 0, 3000, 30000)
    assert enqueued == [job.pk]


def test_the_worker_makes_one_pending_item_per_entry_in_batches(account, allowed_dir, lead, enqueued, unpaced, monkeypatch):
    monkeypatch.setattr(services, "_STORE_BATCH", 1000)
    manifest = _big_manifest(account, allowed_dir, 3500)
    job = services.job_create_upload(manifest=manifest, user=lead)
    progress: list[int] = []

    def keep_going() -> bool:
        progress.append(TransferJob.objects.get(pk=job.pk).items_prepared)
        return True

    assert services.job_prepare(job_id=job.pk, keep_going=keep_going) is True

    job.refresh_from_db()
    assert progress[:4] == [0, 1000, 2000, 3000]  # "preparing N of M", one short transaction per step
    assert (job.prepared, job.items_prepared, job.items.count()) == (True, 3500, 3500)
    assert set(job.items.values_list("state", flat=True)) == {TransferItem.State.PENDING}


def test_preparation_resumes_after_a_crash_without_duplicates(account, allowed_dir, lead, enqueued, unpaced, monkeypatch):
    monkeypatch.setattr(services, "_STORE_BATCH", 1000)
    job = services.job_create_upload(manifest=_big_manifest(account, allowed_dir, 3500), user=lead)
    calls = iter([True, True, False])

    def crash_on_the_third_batch() -> bool:
        if not next(calls):
            raise RuntimeError("the worker died")
        return True

    with pytest.raises(RuntimeError):
        services.job_prepare(job_id=job.pk, keep_going=crash_on_the_third_batch)
    job.refresh_from_db()
    assert (job.prepared, job.items_prepared, job.items.count()) == (False, 2000, 2000)

    assert services.job_prepare(job_id=job.pk) is True

    numbers = list(job.items.values_list("number", flat=True))
    assert sorted(numbers) == list(range(1, 3501))
    assert TransferJob.objects.get(pk=job.pk).items_prepared == 3500


def test_a_pause_while_preparing_stops_and_the_next_run_continues(account, allowed_dir, lead, enqueued, unpaced, monkeypatch):
    monkeypatch.setattr(services, "_STORE_BATCH", 1000)
    job = services.job_create_upload(manifest=_big_manifest(account, allowed_dir, 2500), user=lead)
    answers = iter([True, False])

    assert services.job_prepare(job_id=job.pk, keep_going=lambda: next(answers)) is False
    assert job.items.count() == 1000

    assert services.job_prepare(job_id=job.pk) is True
    assert job.items.count() == 2500


def test_the_counters_are_not_recounted_from_a_half_prepared_job(account, allowed_dir, lead, enqueued, unpaced, monkeypatch):
    monkeypatch.setattr(services, "_STORE_BATCH", 1000)
    job = services.job_create_upload(manifest=_big_manifest(account, allowed_dir, 2500), user=lead)
    answers = iter([True, False])
    services.job_prepare(job_id=job.pk, keep_going=lambda: next(answers))

    services.job_recount(job_id=job.pk)

    assert TransferJob.objects.get(pk=job.pk).bytes_total == 25000  # the manifest's, not the 1000 items made so far


def test_a_retry_leaves_the_failed_items_to_the_worker_which_resets_them(
    account, allowed_dir, lead, enqueued, unpaced, monkeypatch
):
    monkeypatch.setattr(services, "_STORE_BATCH", 1000)
    job = services.job_create_upload(manifest=_big_manifest(account, allowed_dir, 2500), user=lead)
    services.job_prepare(job_id=job.pk)
    job.items.filter(number__gt=100).update(
        state=TransferItem.State.FAILED, error="gone", error_code="missing_source", attempts=1
    )
    job.items.filter(number__lte=100).update(state=TransferItem.State.DONE, bytes_done=10)
    TransferJob.objects.filter(pk=job.pk).update(status=TransferJob.Status.COMPLETED_WITH_ERRORS)
    job.refresh_from_db()

    assert services.job_retry(job=job, user=lead)

    assert job.items.filter(state=TransferItem.State.FAILED).count() == 2400  # untouched by the request
    assert services.job_prepare(job_id=job.pk) is True
    services.job_recount(job_id=job.pk)
    job.refresh_from_db()
    pending = job.items.filter(state=TransferItem.State.PENDING)
    assert (pending.count(), set(pending.values_list("attempts", "error", "error_code"))) == (2400, {(0, "", "")})
    assert (job.files_done, job.files_failed, job.bytes_done, job.bytes_total) == (100, 0, 1000, 25000)


def test_an_upload_of_a_manifest_still_importing_is_refused(account, lead, enqueued):
    manifest = Manifest.objects.create(name="m", account=account, state=Manifest.State.IMPORTING)

    with pytest.raises(services.ManifestNotReady, match="importing"):
        services.job_create_upload(manifest=manifest, user=lead)
    assert not TransferJob.objects.exists()


# --- the recorder: bounded writes, bounded memory ----------------------------------------------


class _NoSync:
    def sync(self) -> None:
        pass


def _prepared_job(account: FarmAccount, allowed_dir: Path, lead: Any, count: int) -> TransferJob:
    job = services.job_create_upload(manifest=_big_manifest(account, allowed_dir, count), user=lead)
    services.job_prepare(job_id=job.pk)
    return TransferJob.objects.get(pk=job.pk)


def test_a_backlog_is_stored_in_transactions_of_bounded_size(account, allowed_dir, lead, enqueued, unpaced, monkeypatch):
    job = _prepared_job(account, allowed_dir, lead, 2500)
    recorder = execution._Recorder(job, [_NoSync()])  # type: ignore[arg-type]
    sizes: list[int] = []
    store = recorder._store
    monkeypatch.setattr(recorder, "_store", lambda batch: (sizes.append(len(batch)), store(batch)))
    monkeypatch.setattr(execution.time, "sleep", lambda seconds: None)
    for pk in job.items.values_list("pk", flat=True):
        recorder(FileFinished(pk, ok=False, error_code="missing_source", error="gone"))

    recorder.write()

    assert sizes == [1000, 1000, 500]
    assert job.items.filter(state=TransferItem.State.FAILED).count() == 2500
    assert TransferJob.objects.get(pk=job.pk).files_failed == 2500


def test_an_engine_far_ahead_of_the_database_waits_for_it(account, allowed_dir, lead, enqueued, unpaced, monkeypatch):
    monkeypatch.setattr(recorder_module, "_BACKLOG_MAX", 10)
    monkeypatch.setattr(execution.time, "sleep", lambda seconds: None)
    job = _prepared_job(account, allowed_dir, lead, 30)
    recorder = execution._Recorder(job, [_NoSync()])  # type: ignore[arg-type]
    ids = list(job.items.values_list("pk", flat=True))
    engine = threading.Thread(target=lambda: [recorder(FileFinished(pk, ok=False, error="gone")) for pk in ids])
    engine.start()

    wait_for(lambda: recorder.backlog() == 10, timeout=10, what="the engine to fill the backlog")
    assert engine.is_alive()  # waiting for room, not piling up results
    while engine.is_alive() or recorder.backlog():
        recorder.write()
    engine.join()

    assert job.items.filter(state=TransferItem.State.FAILED).count() == 30


@pytest.mark.django_db(transaction=True)
def test_a_big_run_keeps_only_its_in_flight_items_in_memory_and_its_counters_true(
    allowed_dir, monkeypatch, team, make_user, make_account
):
    lead = make_user("lead-big", team=team, role="lead")
    account = make_account(team, name="farm-big")
    monkeypatch.setattr(execution, "_PAGE", 500)
    monkeypatch.setattr(recorder_module, "_BACKLOG_MAX", 1000)
    monkeypatch.setattr(tasks.run_job, "delay", lambda job_id: None)
    recorders: list[execution._Recorder] = []

    class Watched(execution._Recorder):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            recorders.append(self)

    monkeypatch.setattr(execution, "Recorder", Watched)
    count = 20_000
    job = services.job_create_upload(manifest=_big_manifest(account, allowed_dir, count), user=lead, options={"is_db": False})

    execution.job_run(job_id=job.pk)

    job.refresh_from_db()
    (recorder,) = recorders
    # The old run held all 20,000 items in two dicts; now: a page, the engine's batch and the backlog.
    assert recorder.most_tracked <= 500 + 500 + 1000 + 300
    assert not recorder.names and not recorder.expected  # everything stored was forgotten
    failed = job.items.filter(state=TransferItem.State.FAILED).count()
    assert (job.status, job.files_failed, failed, job.files_done, job.items.count()) == ("failed", count, count, 0, count)


# --- manifests imported by a worker --------------------------------------------------------------


def _document(allowed_dir: Path, servers: list[str]) -> bytes:
    (allowed_dir / "a.exr").write_bytes(b"abc")
    return json.dumps({"asset": [{"local": str(allowed_dir / "a.exr"), "server": s} for s in servers]}).encode()


def test_an_import_stores_its_entries_in_batches_with_progress(account, allowed_dir, unpaced, monkeypatch):
    monkeypatch.setattr(manifest_store, "BATCH", 2)
    stored: list[int] = []
    store = manifest_store._entries_store
    monkeypatch.setattr(manifest_store, "_entries_store", lambda **kw: (stored.append(len(kw["batch"])), store(**kw)))

    manifest = services.manifest_import(
        name="m", account=account, data=_document(allowed_dir, [f"/D/{n}" for n in range(5)]), user=None
    )

    assert stored == [2, 2, 1]
    assert (manifest.state, manifest.entry_count, manifest.entries_stored, manifest.total_bytes) == ("ready", 5, 5, 15)


def test_an_import_finds_a_server_path_repeated_across_batches(account, allowed_dir, unpaced, monkeypatch):
    monkeypatch.setattr(manifest_store, "BATCH", 2)
    data = _document(allowed_dir, ["/D/a", "/D/b", "/D/c", "/D/d", "/D//a"])

    with pytest.raises(ManifestInvalid) as refused:
        services.manifest_import(name="m", account=account, data=data, user=None)

    assert str(refused.value) == "entry 5: server path '/D//a' repeats entry 1"
    assert not ManifestEntry.objects.exists() and not Manifest.objects.exists()


def test_a_redelivered_import_starts_again_without_duplicates(
    account, allowed_dir, lead, unpaced, django_capture_on_commit_callbacks
):
    data = _document(allowed_dir, ["/D/a", "/D/b", "/D/c"])
    with django_capture_on_commit_callbacks(execute=False):
        manifest = services.manifest_import_begin(name="m", account=account, chunks=[data[:10], data[10:]], user=lead)
    ManifestEntry.objects.create(manifest=manifest, number=1, local="/x", server="/D/a")  # a crashed first attempt

    tasks.import_manifest(manifest.pk)
    tasks.import_manifest(manifest.pk)  # and a duplicate message changes nothing

    manifest.refresh_from_db()
    assert (manifest.state, manifest.entry_count) == ("ready", 3)
    assert list(manifest.entries.values_list("number", "server")) == [(1, "/D/a"), (2, "/D/b"), (3, "/D/c")]
    assert not services.manifest_spool_path(manifest_id=manifest.pk).exists()


def test_a_refused_import_keeps_its_problems_on_the_manifest(account, allowed_dir, lead, django_capture_on_commit_callbacks):
    data = b'{"asset": [{"local": "relative.exr", "server": "/D/a"}, 7]}'
    with django_capture_on_commit_callbacks(execute=False):
        manifest = services.manifest_import_begin(name="m", account=account, chunks=[data], user=lead)

    tasks.import_manifest(manifest.pk)

    manifest.refresh_from_db()
    assert manifest.state == Manifest.State.REFUSED
    assert [p["entry"] for p in manifest.problems] == [1, 2]
    assert manifest.problems[1]["reason"] == "expected an object with 'local' and 'server'"
    assert not manifest.entries.exists()


def test_an_import_that_breaks_is_refused_not_left_importing(
    account, lead, unpaced, monkeypatch, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        manifest = services.manifest_import_begin(name="m", account=account, chunks=[b"{}"], user=lead)

    def broken(manifest: Manifest, handle: object) -> list:
        ManifestEntry.objects.create(manifest=manifest, number=1, local="/x", server="/D/a")
        raise OSError("a disk that went away")

    monkeypatch.setattr(manifest_store, "manifest_fill", broken)

    tasks.import_manifest(manifest.pk)

    manifest.refresh_from_db()
    assert manifest.state == Manifest.State.REFUSED
    assert manifest.problems == [{"entry": 0, "reason": "internal error while reading the file (OSError); see the worker log"}]
    assert not manifest.entries.exists()


def test_the_api_refuses_to_upload_a_manifest_still_importing(client, account, lead, enqueued):
    manifest = Manifest.objects.create(name="m", account=account, state=Manifest.State.IMPORTING)
    client.force_login(lead)

    response = client.post(f"/api/manifests/{manifest.pk}/upload_asset/", {}, content_type="application/json")

    assert response.status_code == 400
    assert "importing" in response.json()["error"]["message"]
    assert not TransferJob.objects.exists()


def _begun(account: FarmAccount, lead: Any, data: bytes, capture: Any) -> Manifest:
    with capture(execute=False):
        return services.manifest_import_begin(name="m", account=account, chunks=[data], user=lead)


def test_a_second_run_leaves_an_import_in_progress_alone(account, allowed_dir, lead, unpaced, django_capture_on_commit_callbacks):
    manifest = _begun(account, lead, _document(allowed_dir, ["/D/a", "/D/b"]), django_capture_on_commit_callbacks)
    path = services.manifest_spool_path(manifest_id=manifest.pk)

    with open(path, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as the first run's worker holds it
        tasks.import_manifest(manifest.pk)
        manifest.refresh_from_db()
        assert (manifest.state, manifest.entries.count(), path.exists()) == ("importing", 0, True)

    tasks.import_manifest(manifest.pk)  # the first run died: its lock went with it

    manifest.refresh_from_db()
    assert (manifest.state, manifest.entry_count, path.exists()) == ("ready", 2, False)


def test_recovery_enqueues_every_manifest_still_importing(
    account, allowed_dir, lead, monkeypatch, django_capture_on_commit_callbacks
):
    importing = _begun(account, lead, _document(allowed_dir, ["/D/a"]), django_capture_on_commit_callbacks)
    Manifest.objects.create(name="done", account=account)
    enqueued: list[int] = []
    monkeypatch.setattr(tasks.import_manifest, "delay", enqueued.append)

    tasks.recover_imports()

    assert enqueued == [importing.pk]


def test_an_import_whose_file_is_gone_is_refused_saying_so(account, allowed_dir, lead, django_capture_on_commit_callbacks):
    manifest = _begun(account, lead, _document(allowed_dir, ["/D/a"]), django_capture_on_commit_callbacks)
    services.manifest_spool_path(manifest_id=manifest.pk).unlink()

    tasks.import_manifest(manifest.pk)

    manifest.refresh_from_db()
    assert (manifest.state, manifest.problems) == (
        "refused",
        [{"entry": 0, "reason": "the uploaded file is gone; import it again"}],
    )


def test_an_import_here_and_now_leaves_no_file_behind(account, allowed_dir, unpaced):
    manifest = services.manifest_import(name="m", account=account, data=_document(allowed_dir, ["/D/a"]), user=None)
    with pytest.raises(ManifestInvalid):
        services.manifest_import(name="m", account=account, data=b"{}", user=None)

    assert manifest.state == "ready"
    assert list(services.manifest_spool_path(manifest_id=0).parent.glob(f"manifest-{manifest.pk}*")) == []
    assert Manifest.objects.count() == 1
