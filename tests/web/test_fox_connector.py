"""The Fox farm connector against the fake farm: identity and storage ids (main and sub-account),
tasks with children and every status code, outputs from a real directory, lines, and the check."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.fox_farm import STATUS_CODES, task_info
from transfers import accounts
from transfers.engine.endpoints.base import StoredFile
from transfers.farm import UnknownTask, UnsupportedAccount, connector_for
from transfers.farm.fox import FoxFarm
from transfers.farm.fox.client import BIDS, PROFILE, TASK_INFO, TASK_LIST, FoxClient
from transfers.farm.fox.errors import FoxError
from transfers.farm.status import STATUSES, Outcome
from transfers.models import AuditEvent


def _farm(account) -> FoxFarm:
    """The connector with a client that does not wait between retries."""
    client = FoxClient(account.domain, account.access_id, account.access_key, account.platform, sleep=lambda _: None)
    return FoxFarm(account, client=client)


def test_the_registry_gives_the_fox_connector_for_a_fox_account(fox_account):
    assert type(connector_for(fox_account())) is FoxFarm


def test_constructing_the_connector_calls_nothing(fox_account, fox_farm):
    FoxFarm(fox_account()).client  # noqa: B018 - made, not used

    assert fox_farm.calls() == []


# --- identity and storage -----------------------------------------------------------------------------


def test_the_identity_of_a_main_account(fox_account):
    me = connector_for(fox_account()).identity()

    assert (me.user_id, me.user_name, me.is_sub_account, me.share_main_capital) == (100001, "studio-main", False, False)
    assert (me.input_bid, me.output_bid, me.config_bid, me.parent_input_bid) == ("10201", "20201", "30201", "10201")
    assert me.sub_user_output_bids == ((100002, "20202"),) and not me.download_disabled


def test_the_identity_is_asked_once_per_connector(fox_account, fox_farm):
    farm = connector_for(fox_account())

    farm.identity()
    farm.storage("input")
    farm.storage("output")

    assert len(fox_farm.calls(PROFILE)) == 1 and len(fox_farm.calls(BIDS)) == 1


def test_the_identity_of_a_sub_account_names_its_main_account(fox_account):
    me = connector_for(fox_account("sub")).identity()

    assert (me.user_id, me.main_user_id, me.is_sub_account, me.share_main_capital) == (100002, 100001, True, True)


def test_a_main_account_uploads_into_its_own_input_storage(fox_account):
    assert connector_for(fox_account()).storage("input") == ("10201", 100001)


def test_a_sub_account_sharing_the_main_assets_uploads_into_the_main_input_under_the_main_user(fox_account):
    assert connector_for(fox_account("sub")).storage("input") == ("10201", 100001)


def test_a_sub_account_keeps_its_own_config_and_output_storage(fox_account):
    farm = connector_for(fox_account("sub"))

    assert farm.storage("config") == ("30202", 100002) and farm.storage("output") == ("20202", 100002)


def test_a_sub_account_not_sharing_assets_uploads_into_its_own_input(fox_account, fox_farm):
    fox_farm.sub.share_main_capital = 0

    assert connector_for(fox_account("sub")).storage("input") == ("10202", 100002)


def test_files_go_through_the_transmitter_not_an_endpoint_of_this_connector(fox_account):
    farm = connector_for(fox_account())

    with pytest.raises(UnsupportedAccount, match="go through the vendor's transmitter"):
        farm.endpoint("input")
    with pytest.raises(UnsupportedAccount, match="go through the vendor's transmitter"):
        farm.area_root("output")


# --- tasks --------------------------------------------------------------------------------------------


def test_a_task_carries_its_scene_status_and_output_folder(fox_account):
    task = connector_for(fox_account()).task(1001)

    assert (task.scene, task.output_folder, task.children) == ("done_shot", "1001_done_shot", ())
    assert task.status.outcome is Outcome.FINISHED


def test_a_parent_task_lists_its_children(fox_account):
    parent = connector_for(fox_account()).task(2001)

    assert parent.children == (2002, 2003) and parent.is_parent


def test_the_leaves_of_a_parent_come_from_one_call_with_each_child_s_status(fox_account, fox_farm):
    leaves = connector_for(fox_account()).leaves(2001)

    assert [(leaf.task_id, leaf.parent_id, leaf.layer, leaf.status.outcome) for leaf in leaves] == [
        (2002, 2001, "beauty", Outcome.ACTIVE),
        (2003, 2001, "shadow", Outcome.FINISHED),
    ]
    assert len(fox_farm.calls(TASK_INFO)) == 1


def test_a_child_task_is_found_by_its_own_id(fox_account):
    child = connector_for(fox_account()).task(2003)

    assert child.parent_id == 2001 and child.output_folder == "2001_layers/shadow"


def test_an_open_parent_with_a_null_child_list_is_a_leaf_not_a_crash(fox_account):
    farm = connector_for(fox_account())

    assert farm.task(2004).children == () and [leaf.task_id for leaf in farm.leaves(2004)] == [2004]


@pytest.mark.parametrize("code", STATUS_CODES)
def test_every_documented_status_code_and_null_is_answered(fox_account, code):
    task = connector_for(fox_account()).task(3000 + (999 if code is None else code))

    assert task.status_code == code
    assert task.status == (STATUSES[code] if code is not None else task.status)
    assert task.status.known is (code is not None)


def test_a_status_code_nobody_documented_is_unknown_and_not_finished(fox_account, fox_farm):
    fox_farm.main.tasks[5077] = task_info(5077, 77)

    status = connector_for(fox_account()).task(5077).status

    assert status.outcome is Outcome.UNKNOWN and not status.terminal()


def test_a_task_the_farm_does_not_have_is_unknown_task(fox_account):
    with pytest.raises(UnknownTask, match="has no task 999999"):
        connector_for(fox_account()).task(999999)


def test_unknown_asks_in_chunks_of_a_hundred_and_knows_children(fox_account, fox_farm):
    ids = [1001, 2002, *range(700000, 700148)]

    missing = connector_for(fox_account()).unknown(ids)

    assert missing == list(range(700000, 700148))
    assert [len(call["body"]["taskIds"]) for call in fox_farm.calls(TASK_INFO)] == [100, 50]


def test_tasks_walks_every_page_and_includes_children_newest_first(fox_account, fox_farm):
    for task_id in range(6000, 6150):
        fox_farm.main.tasks[task_id] = task_info(task_id, 25)

    tasks = connector_for(fox_account()).tasks()

    ids = [task.task_id for task in tasks]
    assert {2002, 2003, 6149, 1001} <= set(ids) and ids == sorted(ids, reverse=True)
    assert len(fox_farm.calls(TASK_LIST)) == 2


def test_a_sub_account_sees_its_own_tasks(fox_account):
    assert [task.task_id for task in connector_for(fox_account("sub")).tasks()] == [4001]


# --- outputs ------------------------------------------------------------------------------------------


def test_the_outputs_of_a_parent_are_its_children_s_files_walked_recursively(fox_account, fox_farm):
    fox_farm.add_output("2001_layers/beauty/beauty.0001.exr", 11)
    fox_farm.add_output("2001_layers/beauty/aov/depth.0001.exr", 7)
    fox_farm.add_output("2001_layers/shadow/shadow.0001.exr", 5)
    fox_farm.add_output("1001_done_shot/other.exr", 3)

    outputs = connector_for(fox_account()).outputs(2001)

    assert [(o.path, o.size, o.finished) for o in outputs] == [
        ("2001_layers/beauty/aov/depth.0001.exr", 7, True),
        ("2001_layers/beauty/beauty.0001.exr", 11, True),
        ("2001_layers/shadow/shadow.0001.exr", 5, True),
    ]


def test_a_task_without_outputs_yet_has_none(fox_account):
    assert connector_for(fox_account()).outputs(1001) == []


def test_list_output_gives_stored_files_with_the_farm_s_modification_time(fox_account, fox_farm):
    when = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC).timestamp()
    fox_farm.add_output("1001_done_shot/a.exr", b"abc", mtime=when)
    fox_farm.add_output("1001_done_shot/sub/b.exr", b"defg", mtime=when)

    listed = connector_for(fox_account()).list_output("1001_done_shot")

    assert listed == [
        StoredFile("1001_done_shot/a.exr", 3, int(when) * 10**9),
        StoredFile("1001_done_shot/sub/b.exr", 4, int(when) * 10**9),
    ]


def test_list_output_of_a_sub_account_reads_its_own_output_storage(fox_account, fox_farm):
    fox_farm.add_output("4001_sub_shot/x.exr", 2, who="sub")

    assert [f.path for f in connector_for(fox_account("sub")).list_output()] == ["4001_sub_shot/x.exr"]


def test_list_output_refuses_a_prefix_leaving_the_output_area(fox_account):
    with pytest.raises(ValueError, match="leaves the output area"):
        connector_for(fox_account()).list_output("../elsewhere")


# --- lines and the check ------------------------------------------------------------------------------


def test_lines_come_from_the_farm_the_default_first_engine_lower_cased(fox_account, fox_farm):
    fox_farm.set_lines("Aspera", [("CTCC", 10221, False), ("HKCT", 10222, True)])
    fox_farm.set_lines("RaySync", [("Europe", 10200, True)])

    lines = connector_for(fox_account()).lines()

    assert [(line.name, line.engine, line.server, line.port, line.is_default) for line in lines] == [
        ("HKCT", "aspera", "127.0.0.1", 10222, True),
        ("Europe", "raysync", "127.0.0.1", 10200, True),
        ("CTCC", "aspera", "127.0.0.1", 10221, False),
    ]


def test_without_lines_from_the_farm_the_account_s_own_lines_are_used(fox_account, fox_farm):
    fox_farm.engines = []
    account = fox_account(transfer_lines=[{"name": "studio", "host": "127.0.0.1", "port": 7300, "engine": "Aspera"}])

    (line,) = connector_for(account).lines()

    assert (line.name, line.engine, line.server, line.port, line.is_default) == ("studio", "aspera", "127.0.0.1", 7300, True)


def test_the_check_signs_in_reads_the_storage_ids_times_each_line_and_names_the_transmitter(
    fox_account, fox_farm, listening_port, closed_port, transmitter_on_path
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True), ("CTCC", closed_port, False)])

    steps = connector_for(fox_account()).check()

    assert [(step.name, step.ok) for step in steps] == [
        ("sign in", True),
        ("storage ids", True),
        ("transfer lines", True),
        ("transmitter", True),
    ]
    assert steps[3].message == f"rayvision_transmitter 1.1.5 at {transmitter_on_path}"
    assert "studio-main (user id 100001)" in steps[0].message
    assert steps[1].message == "input 10201, output 20201, config 30201"
    assert f"HKCT (aspera, 127.0.0.1:{listening_port}): " in steps[2].message and " ms" in steps[2].message
    assert f"CTCC (aspera, 127.0.0.1:{closed_port}): unreachable" in steps[2].message


def test_the_check_says_how_to_install_a_missing_transmitter(fox_account, fox_farm, listening_port, no_transmitter):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])

    *_, last = connector_for(fox_account()).check()

    assert (last.name, last.ok) == ("transmitter", False)
    assert "manage.py install_transmitter" in last.message


def test_the_check_of_a_sub_account_names_the_main_account_and_its_input(fox_account, fox_farm, listening_port):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])

    steps = connector_for(fox_account("sub")).check()

    assert "sub-account of main account 100001" in steps[0].message
    assert "main account's input 10201 (user id 100001)" in steps[1].message


def test_the_check_fails_the_lines_step_when_no_line_answers(fox_account, fox_farm, closed_port):
    fox_farm.set_lines("Aspera", [("HKCT", closed_port, True)])

    steps = {step.name: step for step in connector_for(fox_account()).check()}

    assert not steps["transfer lines"].ok and "unreachable" in steps["transfer lines"].message


def test_the_check_with_a_wrong_key_fails_signing_in_without_showing_the_key(fox_account, fox_farm, no_transmitter):
    fox_farm.expect_rejections()

    steps = _farm(fox_account(access_key="wrong-key-123")).check()

    assert [(step.name, step.ok) for step in steps] == [("sign in", False), ("transmitter", False)]
    assert "signature is invalid" in steps[0].message and "wrong-key-123" not in steps[0].message


def test_the_check_of_an_account_without_a_key_says_so_without_raising(fox_account, transmitter_on_path):
    steps = connector_for(fox_account(access_key="")).check()

    assert [(step.name, step.ok) for step in steps] == [("sign in", False), ("transmitter", True)]
    assert "no access key" in steps[0].message


def test_the_check_of_an_unreachable_farm_fails_signing_in_without_raising(fox_account, closed_port):
    steps = _farm(fox_account(domain=f"http://127.0.0.1:{closed_port}")).check()

    assert not steps[0].ok and "cannot be reached" in steps[0].message


def test_a_sharing_sub_account_without_a_main_input_id_is_refused_clearly(fox_account, fox_farm):
    fox_farm.sub.bids["parent_input_bid"] = ""

    with pytest.raises(FoxError, match="no main account id or main input storage id"):
        connector_for(fox_account("sub")).storage("input")


def test_the_check_fails_the_storage_step_when_the_farm_gives_no_storage_id(fox_account, fox_farm, transmitter_on_path):
    fox_farm.main.bids["output_bid"] = ""

    steps = connector_for(fox_account()).check()

    assert [(step.name, step.ok) for step in steps] == [("sign in", True), ("storage ids", False), ("transmitter", True)]
    assert "no output storage id" in steps[1].message


def test_the_account_check_service_runs_the_fox_check_and_audits_no_key(fox_account, fox_farm, make_user, closed_port):
    fox_farm.set_lines("Aspera", [("HKCT", closed_port, True)])
    account = fox_account()

    steps = accounts.account_check(account=account, user=make_user(team=account.team, role="lead"))

    assert [step.name for step in steps] == ["sign in", "storage ids", "transfer lines", "transmitter"]
    audit = AuditEvent.objects.get(action="account.check")
    assert "fox-main-secret-key" not in repr((audit.before, audit.after))


def test_a_job_naming_an_engine_the_transmitter_lacks_is_refused_before_it_is_recorded(fox_account, make_user, make_manifest):
    from transfers import jobs
    from transfers.kinds import OptionsInvalid
    from transfers.models import TransferJob

    account = fox_account()
    lead = make_user(team=account.team, role="lead")
    manifest = make_manifest(account, user=lead)

    with pytest.raises(OptionsInvalid, match="engine_type 'ftp'"):
        jobs.job_create(kind="upload_asset", account=account, manifest=manifest, user=lead, options={"engine_type": "ftp"})
    assert not TransferJob.objects.exists()
    jobs.job_create(kind="upload_asset", account=account, manifest=manifest, user=lead, options={"engine_type": "raysyncproxy"})


def test_an_account_naming_a_host_outside_rvweb_fox_domains_is_never_called(fox_account, fox_farm, settings):
    settings.FOX_DOMAINS = ["task.foxrenderfarm.com"]  # the fake farm's 127.0.0.1 no longer listed

    steps = connector_for(fox_account()).check()

    assert not steps[0].ok and "not a farm domain this server may reach" in steps[0].message
    assert fox_farm.calls() == []
