"""Manifest works (append, split, dry run) hold a lease while they run: a work whose worker died stays
running without one, and the recovery round takes it over and finishes it exactly once (append adds
only what it had not, split keeps its finished parts); a work whose lease is alive is left alone; a
Redis that is away fails no work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.clock import FakeClock
from transfers import locks, manifest_store, manifest_work, tasks
from transfers.models import FarmAccount, Manifest, ManifestEntry, ManifestWork

pytestmark = pytest.mark.django_db


class _Killed(BaseException):
    """The worker dies here: nothing after this point runs (no handler of the work's catches it)."""


@pytest.fixture
def account(team: Any, make_account: Any) -> FarmAccount:
    return make_account(team, name="farm")


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Works are enqueued nowhere by the services; recovery's messages run here, in this process."""
    sent: list[int] = []
    monkeypatch.setattr(tasks.manifest_work, "delay", lambda work_id: None)

    def run(args: tuple[int], **kwargs: Any) -> None:
        sent.append(args[0])
        tasks.manifest_work(*args)

    monkeypatch.setattr(tasks.manifest_work, "apply_async", run)
    return sent


def _die_on_call(monkeypatch: pytest.MonkeyPatch, target: Any, name: str, call: int) -> None:
    real = getattr(target, name)
    calls = {"n": 0}

    def dying(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == call:
            raise _Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, dying)


def _recover(work: ManifestWork) -> list[int]:
    """Two recovery rounds a grace apart, as the worker's thread runs them."""
    clock = FakeClock()
    recovery = tasks._WorkRecovery(clock)
    assert tasks.works_recover(recovery) == [], "not before the grace: a run may be stopping"
    clock.now += tasks._UNHELD_GRACE
    return tasks.works_recover(recovery)


def test_an_append_whose_worker_died_is_taken_over_and_adds_each_file_once(
    monkeypatch: pytest.MonkeyPatch, enqueued: list[int], account: FarmAccount, make_manifest: Any, allowed_dir: Path
) -> None:
    manifest = make_manifest(account, files=3)
    folder = allowed_dir / "new"
    folder.mkdir()
    for number in range(5):
        (folder / f"n{number}.exr").write_bytes(b"n" * (number + 1))
    work = manifest_work.manifest_append_begin(paths=[str(folder)], user=None, manifest=manifest)
    monkeypatch.setattr(manifest_work, "BATCH", 2)
    with monkeypatch.context() as dying:
        _die_on_call(dying, manifest_work, "_store", 2)  # the first batch of two stored, then the worker dies
        with pytest.raises(_Killed):
            manifest_work.work_run(work_id=work.pk)
    work.refresh_from_db()
    assert (work.state, ManifestEntry.objects.filter(manifest=manifest).count()) == ("running", 5)

    assert _recover(work) == [work.pk]

    work.refresh_from_db()
    manifest.refresh_from_db()
    locals_ = list(manifest.entries.order_by("number").values_list("local", flat=True))
    assert (work.state, work.result["added"], work.result["duplicates"], work.done) == ("done", 5, 0, 5)
    assert len(locals_) == len(set(locals_)) == manifest.entry_count == 8
    assert list(manifest.entries.order_by("number").values_list("number", flat=True)) == list(range(1, 9))
    assert sorted(locals_[3:]) == [str(folder / f"n{number}.exr") for number in range(5)]
    assert manifest.total_bytes == (1 + 2 + 3) + (1 + 2 + 3 + 4 + 5)
    assert tasks.works_recover(tasks._WorkRecovery()) == [], "a finished work is not run again"


def test_a_split_interrupted_after_some_parts_finishes_with_the_right_parts(
    monkeypatch: pytest.MonkeyPatch, enqueued: list[int], account: FarmAccount, make_manifest: Any
) -> None:
    original = make_manifest(account, files=7, name="big")
    work = manifest_work.manifest_split_begin(manifest=original, max_resources_number=2, user=None)
    monkeypatch.setattr(manifest_work, "BATCH", 1)
    with monkeypatch.context() as dying:
        # Parts 1 and 2 made (two batches each), part 3 half-filled when the worker dies.
        _die_on_call(dying, manifest_store, "pace", 5)
        with pytest.raises(_Killed):
            manifest_work.work_run(work_id=work.pk)
    before = list(Manifest.objects.filter(split_from=original).order_by("pk").values_list("pk", "state", "entries_stored"))
    assert [state for _, state, _ in before] == ["ready", "ready", "importing", "importing"]
    assert before[2][2] == 1, "the third part was left half-filled"

    assert _recover(work) == [work.pk]

    work.refresh_from_db()
    made = list(Manifest.objects.filter(split_from=original).order_by("pk"))
    assert (work.state, work.done, work.result["parts"]) == ("done", 7, [pk for pk, _, _ in before])
    assert [m.entry_count for m in made] == [2, 2, 2, 1]
    assert [m.entries.count() for m in made] == [2, 2, 2, 1], "no entry copied twice"
    assert all(m.state == "ready" for m in made)
    assert [m.name for m in made] == [f"big — part {i} of 4" for i in range(1, 5)]
    for part in made:
        assert list(part.entries.order_by("number").values_list("number", flat=True)) == list(range(1, part.entry_count + 1))
    in_parts = [e for m in made for e in m.entries.order_by("number").values_list("local", flat=True)]
    assert in_parts == list(original.entries.order_by("number").values_list("local", flat=True))
    assert sum(m.total_bytes for m in made) == original.total_bytes


def test_a_split_killed_before_its_parts_were_named_makes_them_once(
    monkeypatch: pytest.MonkeyPatch, enqueued: list[int], account: FarmAccount, make_manifest: Any
) -> None:
    original = make_manifest(account, files=3, name="small")
    work = manifest_work.manifest_split_begin(manifest=original, max_resources_number=2, user=None)
    with monkeypatch.context() as dying:
        _die_on_call(dying, manifest_work, "_split_parts", 1)
        with pytest.raises(_Killed):
            manifest_work.work_run(work_id=work.pk)
    assert not Manifest.objects.filter(split_from=original).exists()

    assert _recover(work) == [work.pk]

    made = Manifest.objects.filter(split_from=original).order_by("pk")
    assert [(m.entry_count, m.state) for m in made] == [(2, "ready"), (1, "ready")]


def test_a_dry_run_whose_worker_died_is_simply_run_again(
    monkeypatch: pytest.MonkeyPatch, enqueued: list[int], account: FarmAccount, make_manifest: Any
) -> None:
    manifest = make_manifest(account, files=4)
    work = manifest_work.manifest_dry_run_begin(manifest=manifest, user=None)
    with monkeypatch.context() as dying:
        _die_on_call(dying, manifest_work, "_progress", 2)
        with pytest.raises(_Killed):
            manifest_work.work_run(work_id=work.pk)

    assert _recover(work) == [work.pk]

    work.refresh_from_db()
    assert (work.state, work.done, work.result["files"], work.result["bytes"]) == ("done", 4, 4, 1 + 2 + 3 + 4)


def test_a_work_whose_lease_is_alive_is_left_alone(enqueued: list[int], account: FarmAccount, make_manifest: Any) -> None:
    manifest = make_manifest(account, files=3)
    work = manifest_work.manifest_split_begin(manifest=manifest, max_resources_number=2, user=None)
    ManifestWork.objects.filter(pk=work.pk).update(state=ManifestWork.State.RUNNING)
    clock = FakeClock()
    recovery = tasks._WorkRecovery(clock)
    with locks.work_lock(work.pk):  # another worker's live run
        recovery.due()
        clock.now += tasks._UNHELD_GRACE * 10
        assert recovery.due() == []
        manifest_work.work_run(work_id=work.pk)  # a redelivered message: dropped
        assert locks.works_held([work.pk]) == {work.pk}
    work.refresh_from_db()
    assert (work.state, work.result) == ("running", {})
    assert not Manifest.objects.filter(split_from=manifest).exists()
    assert enqueued == []


def test_redis_away_fails_no_work(
    monkeypatch: pytest.MonkeyPatch, enqueued: list[int], account: FarmAccount, make_manifest: Any
) -> None:
    manifest = make_manifest(account, files=3)
    work = manifest_work.manifest_dry_run_begin(manifest=manifest, user=None)

    def away(*args: Any) -> Any:
        raise RedisConnectionError("Connection refused")

    with monkeypatch.context() as outage:
        outage.setattr(locks, "work_lock", away)
        manifest_work.work_run(work_id=work.pk)
        work.refresh_from_db()
        assert (work.state, work.error) == ("queued", ""), "untouched: enqueued again once Redis is back"
        outage.setattr(locks, "works_held", away)
        with pytest.raises(RedisConnectionError):  # the round fails and the thread tries again next time
            tasks.works_recover(tasks._WorkRecovery())

    clock = FakeClock()
    recovery = tasks._WorkRecovery(clock)
    recovery.due()
    clock.now += tasks._QUEUED_GRACE
    assert tasks.works_recover(recovery) == [work.pk]
    work.refresh_from_db()
    assert (work.state, work.result["files"]) == ("done", 3)


def test_a_run_that_lost_its_lease_stops_and_leaves_the_work_running(
    monkeypatch: pytest.MonkeyPatch, enqueued: list[int], account: FarmAccount, make_manifest: Any
) -> None:
    manifest = make_manifest(account, files=3)
    work = manifest_work.manifest_dry_run_begin(manifest=manifest, user=None)
    real = manifest_work._check

    def lost(running: ManifestWork) -> None:
        running.lease.lost.set()  # type: ignore[attr-defined]  # Redis said the lease is no longer ours
        real(running)

    monkeypatch.setattr(manifest_work, "_check", lost)
    manifest_work.work_run(work_id=work.pk)

    work.refresh_from_db()
    assert (work.state, work.error, work.result) == ("running", "", {})
