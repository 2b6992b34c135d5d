"""Farm connectors: chosen by the account's kind through one registry; the local farm's areas, tasks
(parents and children), outputs and transfer line."""

from __future__ import annotations

import pytest

from transfers import farm, services
from transfers.farm import CONNECTORS, FarmConnector, UnknownTask, UnsupportedAccount, connector_for
from transfers.farm.local import LocalFarm
from transfers.farm.status import Outcome
from transfers.models import FarmAccount, FarmFrame


@pytest.fixture(autouse=True)
def _farm_root(farm_root):
    return farm_root


def test_the_registry_gives_the_local_farm_connector_for_a_local_account(make_account):
    account = make_account(kind=FarmAccount.Kind.LOCAL)

    connector = connector_for(account)

    assert type(connector) is LocalFarm and connector.account == account


def test_the_registry_dispatches_on_the_kind_alone(make_account, monkeypatch):
    class Fake(FarmConnector):
        kind = FarmAccount.Kind.FOX

    monkeypatch.setitem(CONNECTORS, FarmAccount.Kind.FOX, Fake)

    assert type(connector_for(make_account(kind=FarmAccount.Kind.FOX))) is Fake


def test_an_account_of_a_kind_without_a_connector_is_refused_saying_which_kinds_exist(make_account, without_fox_connector):
    account = make_account(name="fox", kind=FarmAccount.Kind.FOX)

    with pytest.raises(UnsupportedAccount, match=r"has no connector for it.*local"):
        connector_for(account)


def test_services_farm_storage_is_the_registry_connector_with_its_areas_made(make_account, farm_root):
    account = make_account()

    storage = services.farm_storage(account=account)

    assert isinstance(storage, LocalFarm)
    assert storage.areas() == {name: farm_root / f"account-{account.pk}" / name for name in farm.AREAS}
    assert all(path.is_dir() for path in storage.areas().values())


def test_an_unknown_area_is_refused(make_account):
    with pytest.raises(ValueError, match="unknown storage area 'outputs'"):
        connector_for(make_account()).area_root("outputs")


def test_the_local_farm_has_one_loopback_line(make_account):
    (line,) = connector_for(make_account()).lines()

    assert (line.name, line.server, line.is_default) == ("loopback", "127.0.0.1", True)


def test_tasks_come_with_their_status_parents_and_children(make_account, make_farm_task):
    account = make_account()
    parent = make_farm_task(account, task_id=2000, scene="shot", status=5)
    make_farm_task(account, task_id=2001, scene="shot", parent=parent, layer="beauty", status=25, frames_expected=3)
    make_farm_task(account, task_id=2002, scene="shot", parent=parent, layer="shadow", status=15, frames_expected=3)
    make_farm_task(make_account(), task_id=2000, scene="other")  # another account's task with the same id

    connector = connector_for(account)
    tasks = {task.task_id: task for task in connector.tasks()}

    assert set(tasks) == {2000, 2001, 2002}
    assert tasks[2000].children == (2001, 2002) and tasks[2000].is_parent
    assert tasks[2001].parent_id == 2000 and tasks[2001].output_folder == "2000_shot/beauty"
    assert tasks[2002].status.outcome is Outcome.STOPPED
    assert [leaf.task_id for leaf in connector.leaves(2000)] == [2001, 2002]
    assert connector.task(2001).layer == "beauty"


def test_an_unknown_task_id_is_a_clear_error(make_account):
    with pytest.raises(UnknownTask, match="has no task 999"):
        connector_for(make_account()).task(999)


def test_outputs_are_the_announced_frames_and_the_files_not_announced_yet(make_account, make_farm_task):
    account = make_account()
    connector = connector_for(account).ensure()
    task = make_farm_task(account, task_id=3000, scene="shot")
    folder = connector.area_root("output") / task.output_folder
    folder.mkdir(parents=True)
    (folder / "a.exr").write_bytes(b"a" * 10)
    (folder / "b.exr").write_bytes(b"b" * 4)  # written, not announced: maybe still being written
    (folder / ".c.exr.rvpart").write_bytes(b"c")  # a partial file: never an output
    FarmFrame.objects.create(task=task, path="3000_shot/a.exr", size=10, finished_at="2026-01-01T00:00:00Z")

    outputs = connector.outputs(3000)

    assert [(o.path, o.size, o.finished) for o in outputs] == [("3000_shot/a.exr", 10, True), ("3000_shot/b.exr", 4, False)]


def test_a_parent_s_outputs_are_its_leaves_outputs(make_account, make_farm_task):
    account = make_account()
    connector = connector_for(account).ensure()
    parent = make_farm_task(account, task_id=4000, scene="shot")
    for layer, task_id in (("l1", 4001), ("l2", 4002)):
        child = make_farm_task(account, task_id=task_id, scene="shot", parent=parent, layer=layer)
        path = connector.area_root("output") / child.output_folder / "f.exr"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"f")

    assert [o.path for o in connector.outputs(4000)] == ["4000_shot/l1/f.exr", "4000_shot/l2/f.exr"]
