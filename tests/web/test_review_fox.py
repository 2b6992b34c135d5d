"""Review of the Fox Renderfarm / Renderbus work (issue 9): a hostile farm, a careless or hostile user."""

from __future__ import annotations

import json
import threading
import time

import pytest
from rest_framework.test import APIClient

from tests import fox_farm as fake
from tests.conftest import wait_for
from tests.fox_farm import task_info
from transfers import jobs, services
from transfers.farm import FarmError, connector_for
from transfers.farm.fox import client as fox_client
from transfers.farm.fox import outputs
from transfers.farm.fox.errors import FoxError
from transfers.models import TransferJob


def _api(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


# --- a farm that misbehaves --------------------------------------------------------------------------


def test_review_a_farm_that_ignores_the_page_number_is_not_asked_a_thousand_times(fox_farm, fox_account, monkeypatch):
    def endless(farm, me, body):  # every page the same first page, and "more pages" forever
        return {"pageCount": 10**6, "pageNum": body.get("pageNum"), "total": 10**8, "size": 100, "items": [task_info(1001, 25)]}

    monkeypatch.setitem(fake.ROUTES, fox_client.TASK_LIST, endless)

    tasks = connector_for(fox_account()).tasks()

    assert [t.task_id for t in tasks] == [1001]
    assert len(fox_farm.calls(fox_client.TASK_LIST)) <= 3, "one farm page render asked for every page up to MAX_PAGES"


def test_review_bad_names_in_an_output_listing_are_skipped(fox_farm, fox_account, monkeypatch):
    names = ["..", ".", "/etc/passwd", "a/../../x", "..\\x", "nul\x00x", "", "ok.exr"]

    def listing(farm, me, body):
        return [{"fileName": n, "fileSize": 1, "directory": False, "lastModify": "x"} for n in names]

    monkeypatch.setitem(fake.ROUTES, fox_client.OUTPUT_FILES, listing)

    assert [f.path for f in connector_for(fox_account()).list_output("")] == ["ok.exr"]


def test_review_an_output_listing_cut_short_by_the_folder_bound_is_not_taken_for_the_whole(fox_farm, fox_account, monkeypatch):
    monkeypatch.setattr(outputs, "MAX_FOLDERS", 3)
    for n in range(6):
        fox_farm.add_output(f"1001_done_shot/layer{n}/frame.exr", b"x")

    connector = connector_for(fox_account())

    with pytest.raises(FarmError):  # today: 2 of 6 frames, silently, and the download "completes"
        connector.outputs(1001)


@pytest.mark.django_db(transaction=True)
def test_review_the_farm_page_does_not_hang_on_a_farm_that_never_answers(fox_account, make_user, client, listening_port):
    account = fox_account(domain=f"http://127.0.0.1:{listening_port}")  # accepts, never answers
    lead = make_user(team=account.team, role="lead")
    client.force_login(lead)
    answered: list[int] = []
    page = threading.Thread(target=lambda: answered.append(client.get(f"/farm/{account.pk}/").status_code), daemon=True)
    started = time.monotonic()
    page.start()
    page.join(timeout=30)

    assert answered == [200], f"the farm page had not answered after {time.monotonic() - started:.0f}s"


@pytest.mark.django_db(transaction=True)
def test_review_the_farm_tasks_api_does_not_hang_on_a_farm_that_never_answers(fox_account, make_user, listening_port):
    account = fox_account(domain=f"http://127.0.0.1:{listening_port}")
    api = _api(make_user(team=account.team, role="member"))
    answered: list[int] = []
    call = threading.Thread(target=lambda: answered.append(api.get(f"/api/farm/{account.pk}/tasks/").status_code), daemon=True)
    call.start()
    call.join(timeout=30)

    assert answered == [502], "the farm tasks API had not answered after 30 s"


# --- the worker, the fake transmitter: a hostile user's files -------------------------------------------


def _knobs(fox_farm, **knobs: object) -> None:
    (fox_farm.storage_root / "knobs.json").write_text(json.dumps(knobs))


def _ended(job: TransferJob) -> TransferJob | None:
    job.refresh_from_db()
    return job if job.is_terminal else None


@pytest.mark.django_db(transaction=True)
def test_review_a_symlink_swapped_in_after_the_check_never_sends_a_file_from_outside_the_roots(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port, tmp_path
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    _knobs(fox_farm, FAKE_XMIT_MODE="slow", FAKE_XMIT_SECONDS="3")  # the first file holds the transmitter 3 s
    secret = tmp_path / "outside-the-roots.key"
    secret.write_bytes(b"PRIVATE KEY outside every allowed root")
    first, second = allowed_dir / "a.exr", allowed_dir / "b.exr"
    first.write_bytes(b"a" * 1000)
    second.write_bytes(b"b" * 1000)
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    data = json.dumps({"asset": [{"local": str(p), "server": f"/project/{p.name}"} for p in (first, second)]}).encode()
    manifest = services.manifest_import(name="swap", account=account, data=data, user=lead)
    job = jobs.job_create(kind="upload_asset", account=account, manifest=manifest, user=lead, options={})
    runs = fox_farm.storage_root / "runs.jsonl"
    wait_for(lambda: runs.exists(), timeout=60, what=f"the transmitter to start\n{celery_worker.log_tail()}")

    second.unlink()
    second.symlink_to(secret)  # after rvweb checked it, before the transmitter reads it
    wait_for(lambda: _ended(job), timeout=90, what=f"job {job.pk} to end\n{celery_worker.log_tail()}")

    sent = fox_farm.input_dir() / "project" / "b.exr"
    assert not (sent.exists() and sent.read_bytes() == secret.read_bytes()), "a file outside the allowed roots reached the farm"
    assert sent.read_bytes() == b"b" * 1000, "the transmitter read the file rvweb checked and opened"


@pytest.mark.django_db(transaction=True)
def test_review_a_download_folder_swapped_for_a_symlink_mid_run_gets_nothing_written_outside_the_roots(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port, tmp_path
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    _knobs(fox_farm, FAKE_XMIT_MODE="slow", FAKE_XMIT_SECONDS="3")
    for n in range(2):
        fox_farm.add_output(f"1001_done_shot/frame_{n}.exr", b"frame" * 100)
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    local = allowed_dir / "frames"
    job = jobs.job_create(kind="download", account=account, user=lead, options={"task_id_list": [1001], "local_path": str(local)})
    runs = fox_farm.storage_root / "runs.jsonl"
    wait_for(lambda: runs.exists(), timeout=60, what=f"the transmitter to start\n{celery_worker.log_tail()}")
    [staging] = local.glob(".rvweb-transmitter-*")  # the transmitter writes below it

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / staging.name).mkdir(parents=True)
    local.rename(allowed_dir / "frames.moved")
    local.symlink_to(elsewhere)  # the checked folder, swapped after the check
    wait_for(lambda: _ended(job), timeout=90, what=f"job {job.pk} to end\n{celery_worker.log_tail()}")

    assert [p for p in elsewhere.rglob("*") if p.is_file()] == [], "the transmitter wrote outside the allowed roots"


@pytest.mark.parametrize("domain", ["http://10.0.0.5:6379", "http://169.254.169.254", "ftp://task.foxrenderfarm.com"])
def test_review_a_farm_domain_in_plain_http_is_refused_unless_it_is_this_machine(domain):
    # a lead's account would make the web server POST signed requests in clear text to any host of the
    # network, and say which answered (an internal port scanner); the farm itself is https
    with pytest.raises(FoxError):
        fox_client.FoxClient(domain, "AKID", "key", "2")


# --- another team, bad input ---------------------------------------------------------------------------


def test_review_another_teams_fox_account_is_a_404_everywhere_and_its_farm_is_not_called(
    fox_farm, fox_account, make_user, client, allowed_dir
):
    theirs = fox_account()
    me = make_user()  # in a team of their own, not the account's
    client.force_login(me)
    api = _api(me)

    answers = [
        client.get(f"/farm/{theirs.pk}/").status_code,
        client.post(f"/farm/{theirs.pk}/download", {"kind": "download"}).status_code,
        api.get(f"/api/farm/{theirs.pk}/tasks/").status_code,
        api.get(f"/api/farm/{theirs.pk}/tasks/1001/").status_code,
        api.post(
            "/api/transfer-tasks/",
            {"account": theirs.pk, "task_type": "download", "local_path": str(allowed_dir), "task_id": 1001},
            format="json",
        ).status_code,
    ]

    assert answers == [404] * 5
    assert fox_farm.calls() == [], "the farm of an account the user may not see was called"


@pytest.mark.parametrize(
    "body",
    [
        [],
        "x",
        None,
        {"account": "1; drop", "task_type": "download"},
        {"account": 10**30, "task_type": "download", "local_path": "/x"},
        {"task_type": "render", "local_path": "/x"},
        {"task_type": ["download"], "local_path": {"a": 1}},
        {"task_type": "download", "local_path": "/x", "task_id": 10**40},
        {"task_type": "download", "local_path": "\x00", "max_speed": -1},
        {"task_type": "upload", "local_path": "/x" * 5000, "server_port": 70000},
    ],
)
def test_review_bad_transfer_task_bodies_are_4xx_never_a_500(body, fox_account, make_user):
    account = fox_account()
    api = _api(make_user(team=account.team, role="lead"))
    if isinstance(body, dict) and "account" not in body:
        body = {"account": account.pk, **body}

    status = api.post("/api/transfer-tasks/", body, format="json").status_code

    assert 400 <= status < 500, status


@pytest.mark.parametrize(
    "raw", ['{"account": ACCOUNT, "task_type": "download", "local_path": "/x", "max_timeout": NaN}', "{", "\ufeff{}"]
)
def test_review_a_transfer_task_body_that_is_not_json_is_a_400(raw, fox_account, make_user):
    account = fox_account()
    api = _api(make_user(team=account.team, role="lead"))

    status = api.post("/api/transfer-tasks/", raw.replace("ACCOUNT", str(account.pk)), content_type="application/json")

    assert status.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_review_a_download_of_hostile_output_names_keeps_the_good_file_and_writes_nowhere_else(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port, monkeypatch
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    fox_farm.add_output("1001_done_shot/ok.exr", b"good frame")
    names = ["ok.exr", "ok.exr", "bad\nname.exr", "a\rb.exr", "..", "../up.exr", "x" * 300 + ".exr", "tab\t.exr"]

    def listing(farm, me, body):
        if body.get("treePath", "/").strip("/") != "1001_done_shot":
            return []
        return [{"fileName": n, "fileSize": 10, "directory": False, "lastModify": "2026-01-01 00:00:00"} for n in names]

    monkeypatch.setitem(fake.ROUTES, fox_client.OUTPUT_FILES, listing)
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    local = allowed_dir / "hostile"
    options = {"task_id_list": [1001], "local_path": str(local), "upload_num": 1}
    logged_before = celery_worker.log.stat().st_size  # the session's worker: earlier tests' lines are not this one's
    job = jobs.job_create(kind="download", account=account, user=lead, options=options)
    wait_for(lambda: _ended(job), timeout=90, what=f"job {job.pk} to end\n{celery_worker.log_tail()}")

    assert (local / "1001_done_shot" / "ok.exr").read_bytes() == b"good frame", job.error
    written = sorted(str(p.relative_to(allowed_dir)) for p in allowed_dir.rglob("*") if p.is_file())
    assert written == ["hostile/1001_done_shot/ok.exr"], written
    with open(celery_worker.log, "rb") as log:
        log.seek(logged_before)
        assert b"Traceback" not in log.read(), "the hostile names crashed nothing in the worker"


@pytest.mark.django_db(transaction=True)
def test_review_the_access_key_is_nowhere_after_a_job(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port
):
    from django.core import serializers

    from transfers.models import AuditEvent

    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    fox_farm.add_output("1001_done_shot/f.exr", b"f")
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    options = {"task_id_list": [1001], "local_path": str(allowed_dir / "k")}
    job = jobs.job_create(kind="download", account=account, user=lead, options=options)
    wait_for(lambda: _ended(job), timeout=90, what=f"job {job.pk} to end\n{celery_worker.log_tail()}")
    key = fox_farm.main.access_key

    places = {
        "worker log": celery_worker.log.read_text(errors="replace"),
        "job API": _api(lead).get(f"/api/jobs/{job.pk}/").content.decode(),
        "job row": serializers.serialize("json", [job]),
        "audit rows": serializers.serialize("json", AuditEvent.objects.all()),
        "transmitter runs": (fox_farm.storage_root / "runs.jsonl").read_text(),
    }
    assert [where for where, text in places.items() if key in text] == []


def _farm_refuses_task_info(monkeypatch):
    def refuse(farm, me, body):
        raise LookupError("the farm's task service is down")

    monkeypatch.setitem(fake.ROUTES, fox_client.TASK_INFO, refuse)


def test_review_a_farm_error_while_starting_a_download_from_the_farm_page_is_not_a_500(
    fox_farm, fox_account, make_user, client, allowed_dir, monkeypatch
):
    account = fox_account()
    client.force_login(make_user(team=account.team, role="lead"))
    _farm_refuses_task_info(monkeypatch)

    form = {"kind": "download", "task_id_list": [1001], "local_path": str(allowed_dir), "conflict": "skip_identical"}

    answer = client.post(f"/farm/{account.pk}/download", {**form, "sleep_time": 10})

    assert answer.status_code in (200, 302), answer.status_code


def test_review_a_farm_error_while_starting_a_download_through_the_api_is_not_a_500(
    fox_farm, fox_account, make_user, allowed_dir, monkeypatch
):
    account = fox_account()
    api = _api(make_user(team=account.team, role="lead"))
    _farm_refuses_task_info(monkeypatch)
    body = {"account": account.pk, "kind": "download", "options": {"task_id_list": [1001], "local_path": str(allowed_dir)}}

    answers = [
        api.post("/api/jobs/", body, format="json").status_code,
        api.post(
            "/api/transfer-tasks/",
            {"account": account.pk, "task_type": "download", "local_path": str(allowed_dir), "task_id": 1001},
            format="json",
        ).status_code,
    ]

    assert [a for a in answers if a >= 500 and a != 502] == [], answers


@pytest.mark.django_db(transaction=True)
def test_review_test_connection_does_not_hang_on_a_farm_that_never_answers(fox_account, make_user, client, listening_port):
    account = fox_account(domain=f"http://127.0.0.1:{listening_port}")
    client.force_login(make_user(team=account.team, role="lead"))
    answered: list[int] = []
    check = threading.Thread(target=lambda: answered.append(client.post(f"/farm/{account.pk}/check").status_code), daemon=True)
    check.start()
    check.join(timeout=30)

    assert answered == [200], "test connection had not answered after 30 s"


def test_review_a_task_whose_output_folder_climbs_out_is_not_a_500(fox_farm, fox_account, make_user):
    fox_farm.main.tasks[6001] = task_info(6001, 25, "climb", outputFileName="../../other_user/secret")
    account = fox_account()

    answer = _api(make_user(team=account.team, role="member")).get(f"/api/farm/{account.pk}/tasks/6001/")

    assert answer.status_code < 500 or answer.status_code == 502, answer.status_code


@pytest.mark.parametrize(
    ("path", "data"),
    [
        (fox_client.TASK_LIST, {"items": [{"id": 7001, "isOpen": 1, "respRenderingTaskList": 5}], "pageCount": 1}),
        (fox_client.TASK_LIST, {"items": 5, "pageCount": "x"}),
        (fox_client.CONFIG, {"resqEngines": 7}),
        (fox_client.CONFIG, {"resqEngines": [{"engineName": "Aspera", "respTaskEngineLines": 3}]}),
    ],
)
def test_review_a_farm_answer_of_the_wrong_shape_is_not_a_500_on_the_farm_page(
    path, data, fox_farm, fox_account, make_user, client, monkeypatch
):
    monkeypatch.setitem(fake.ROUTES, path, lambda farm, me, body: data)
    account = fox_account()
    client.force_login(make_user(team=account.team, role="member"))

    assert client.get(f"/farm/{account.pk}/").status_code == 200


def test_review_an_output_listing_of_the_wrong_shape_is_not_a_500(fox_farm, fox_account, make_user, monkeypatch):
    monkeypatch.setitem(fake.ROUTES, fox_client.OUTPUT_FILES, lambda farm, me, body: 5)
    account = fox_account()

    answer = _api(make_user(team=account.team, role="member")).get(f"/api/farm/{account.pk}/tasks/1001/")

    assert answer.status_code in (200, 502), answer.status_code


@pytest.mark.django_db(transaction=True)
def test_review_a_manifest_file_replaced_by_a_symlink_before_the_run_is_refused_at_the_run(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port, tmp_path
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    secret = tmp_path / "outside.key"
    secret.write_bytes(b"outside the roots")
    path = allowed_dir / "c.exr"
    path.write_bytes(b"c")
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    data = json.dumps({"asset": [{"local": str(path), "server": "/project/c.exr"}]}).encode()
    manifest = services.manifest_import(name="link", account=account, data=data, user=lead)
    path.unlink()
    path.symlink_to(secret)  # checked at import, swapped before the run
    job = jobs.job_create(kind="upload_asset", account=account, manifest=manifest, user=lead, options={})
    wait_for(lambda: _ended(job), timeout=90, what=f"job {job.pk} to end\n{celery_worker.log_tail()}")

    assert job.files_failed == 1
    assert not (fox_farm.input_dir() / "project" / "c.exr").exists()
