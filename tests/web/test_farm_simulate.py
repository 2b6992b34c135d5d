"""simulate_render: a task (or a parent with layers) whose frames appear in the output area over time,
each written under a partial name and renamed when complete, each posted as a farm event."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from transfers.engine.paths import PARTIAL_SUFFIX
from transfers.farm import connector_for
from transfers.farm.simulate import render_run, render_start
from transfers.farm_events import Actor, farm_event_record
from transfers.models import AuditEvent, FarmAccount, FarmFrame, FarmTask


@pytest.fixture(autouse=True)
def _farm_root(farm_root):
    return farm_root


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_simulate_render_writes_every_frame_and_finishes_the_task(make_account):
    account = make_account()
    out = io.StringIO()

    call_command("simulate_render", account=account.pk, frames=5, interval=0.0, scene="shot_010", frame_size=1000, stdout=out)

    task = FarmTask.objects.get(account=account)
    output = connector_for(account).area_root("output")
    assert task.output_folder == f"{task.task_id}_shot_010" and task.frames_expected == 5
    assert task.status == 25
    assert [p.relative_to(output).as_posix() for p in _files(output)] == [
        f"{task.task_id}_shot_010/shot_010.{n:04d}.exr" for n in range(1, 6)
    ]
    assert all(p.stat().st_size == 1000 for p in _files(output))
    assert FarmFrame.objects.filter(task=task, finished_at__isnull=False, size=1000).count() == 5
    assert AuditEvent.objects.filter(action="farm.frame_finish", target_id=str(task.pk)).count() == 5
    assert f"task {task.task_id} finished: 5 frames written" in out.getvalue()


def test_simulate_render_with_children_makes_a_parent_with_one_child_per_layer(make_account):
    account = make_account()

    call_command("simulate_render", account=account.pk, frames=2, interval=0.0, children=3, scene="s", stdout=io.StringIO())

    parent = FarmTask.objects.get(account=account, parent=None)
    children = list(parent.children.order_by("task_id"))
    assert [c.output_folder for c in children] == [f"{parent.task_id}_s/layer_{n}" for n in (1, 2, 3)]
    assert parent.frames_expected == 0 and all(c.frames_expected == 2 for c in children)
    assert all(c.frames.filter(finished_at__isnull=False).count() == 2 for c in children)
    assert {parent.status, *(c.status for c in children)} == {25}
    assert [o.path for o in connector_for(account).outputs(parent.task_id)][:2] == [
        f"{parent.task_id}_s/layer_1/s.0001.exr",
        f"{parent.task_id}_s/layer_1/s.0002.exr",
    ]


def test_no_partial_frame_is_ever_at_a_final_name(make_account):
    """At every pause of the render (between the pieces of a frame, and between frames) every file at a
    final name is complete and every incomplete one is at a partial name."""
    account = make_account()
    plan = render_start(account=account, scene="shot", frames=4, actor=Actor(), interval=0.01)
    plan = type(plan)(plan.account_id, plan.task_id, plan.frames, plan.interval, frame_size=64 * 1024)
    output = connector_for(account).area_root("output")
    seen_partials = []

    def look(_seconds: float) -> None:
        for path in _files(output):
            if PARTIAL_SUFFIX in path.name:
                seen_partials.append(path.stat().st_size)
            else:
                assert path.stat().st_size == plan.frame_size, f"{path} is at its final name with {path.stat().st_size} bytes"

    written = render_run(plan, actor=Actor(), sleep=look)

    assert written == 4
    assert any(0 < size < plan.frame_size for size in seen_partials), "the render was never seen mid-frame"
    assert not [p for p in _files(output) if PARTIAL_SUFFIX in p.name]


def test_each_frame_is_announced_only_once_it_is_complete(make_account, monkeypatch):
    account = make_account()
    plan = render_start(account=account, scene="shot", frames=3, actor=Actor(), interval=0.0)
    output = connector_for(account).area_root("output")
    import transfers.farm.simulate as simulate

    announced = []
    record = simulate.farm_event_record

    def spy(*, account: FarmAccount, event: dict, actor: Actor) -> object:
        if event["type"] == "frame_finished":
            assert (output / event["path"]).stat().st_size == event["size"]
            announced.append(event["path"])
        return record(account=account, event=event, actor=actor)

    monkeypatch.setattr(simulate, "farm_event_record", spy)
    render_run(plan, actor=Actor(), sleep=lambda s: None)

    assert len(announced) == len(set(announced)) == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [({"frames": 0}, "--frames"), ({"children": -1}, "--children"), ({"interval": -1.0}, "--interval")],
)
def test_simulate_render_refuses_bad_options(make_account, options, message):
    account = make_account()

    with pytest.raises(CommandError, match=message):
        call_command("simulate_render", account=account.pk, **options)
    assert not FarmTask.objects.exists()


def test_simulate_render_on_an_unknown_account_says_so(db):
    with pytest.raises(CommandError, match="no farm account 424242"):
        call_command("simulate_render", account=424242)


def test_simulate_render_on_a_farm_without_a_connector_says_so(make_account, without_fox_connector):
    account = make_account(kind=FarmAccount.Kind.FOX)

    with pytest.raises(CommandError, match="has no connector"):
        call_command("simulate_render", account=account.pk, frames=1, interval=0.0)


def test_the_api_shows_a_render_s_tasks_and_outputs(make_account, make_user, client):
    account = make_account()
    client.force_login(make_user(team=account.team, role="viewer"))
    call_command("simulate_render", account=account.pk, frames=2, interval=0.0, children=2, scene="s", stdout=io.StringIO())
    parent = FarmTask.objects.get(account=account, parent=None)

    listed = client.get(f"/api/farm/{account.pk}/tasks/").json()["tasks"]
    one = client.get(f"/api/farm/{account.pk}/tasks/{parent.task_id}/").json()

    top = next(t for t in listed if t["task_id"] == parent.task_id)
    assert (top["frames_done"], top["frames_expected"], top["outcome"], top["terminal"]) == (4, 4, "finished", True)
    assert len(top["children"]) == 2 and all(t["parent_id"] == parent.task_id for t in listed if t["task_id"] != parent.task_id)
    assert [o["path"] for o in one["outputs"]] == [f"{parent.task_id}_s/layer_{n}/s.000{f}.exr" for n in (1, 2) for f in (1, 2)]
    assert all(o["finished"] and o["size"] == 64 * 1024 for o in one["outputs"])
    assert client.get(f"/api/farm/{account.pk}/tasks/99999/").status_code == 404


@pytest.mark.parametrize("children", [0, 2])
def test_a_render_whose_task_is_stopped_writes_no_more_frames(make_account, children):
    account = make_account()
    plan = render_start(account=account, scene="shot", frames=10, children=children, actor=Actor(), interval=0.0)

    def stop_after_two(_seconds: float) -> None:
        if FarmFrame.objects.filter(task__account=account).count() == 2:
            farm_event_record(
                account=account, event={"type": "task_finished", "task_id": plan.task_id, "status": 10}, actor=Actor()
            )

    written = render_run(plan, actor=Actor(), sleep=stop_after_two)

    task = FarmTask.objects.get(account=account, task_id=plan.task_id)
    assert written == 2 and task.status == 10
    assert len(_files(connector_for(account).area_root("output"))) == 2
    assert set(FarmTask.objects.filter(account=account).values_list("status", flat=True)) == {10}


@pytest.mark.parametrize(
    ("frames", "interval", "valid"), [(1000, 0.6, True), (1000, 0.61, False), (50, 5.0, True), (1000, 0.0, True)]
)
def test_the_simulate_form_keeps_a_render_to_ten_minutes(frames, interval, valid):
    from transfers.farm.views import SimulateForm

    form = SimulateForm({"scene": "s", "frames": frames, "children": 0, "interval": interval})

    assert form.is_valid() == valid
