"""The farm events API: a per-account bearer token (stored as a digest only), events that can only name
files inside the task's output folder, and a clear 4xx (never a 500) for whatever a client sends."""

from __future__ import annotations

import json
import logging

import pytest
from django.db import connection
from django.test import Client

from transfers.farm import connector_for
from transfers.farm_events import Actor, farm_token_generate, farm_token_revoke
from transfers.models import AuditEvent, FarmEventToken, FarmFrame, FarmTask


@pytest.fixture(autouse=True)
def _farm_root(farm_root):
    return farm_root


@pytest.fixture
def account(make_account):
    return make_account(name="render farm")


@pytest.fixture
def token(account):
    return farm_token_generate(account=account, actor=Actor())


def _post(account_id: int, body: object, token: str | None, *, raw: bytes | None = None) -> tuple[int, dict]:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    data = raw if raw is not None else json.dumps(body).encode()
    response = Client().post(f"/api/farm/{account_id}/events/", data=data, content_type="application/json", **headers)
    return response.status_code, response.json()


def _frame(account, task: FarmTask, name: str = "f.0001.exr", data: bytes = b"x" * 100) -> str:
    path = f"{task.output_folder}/{name}"
    target = connector_for(account).ensure().area_root("output") / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return path


# --- authentication ------------------------------------------------------------------------------


def test_an_event_with_the_account_token_is_recorded_and_audited(account, token):
    status, answer = _post(account.pk, {"type": "task_created", "scene": "shot", "frames": 2, "task_id": 77}, token)

    assert status == 200, answer
    assert answer["events"] == [
        {"type": "task_created", "task_id": 77, "outcome": "created", "status": 0, "frames_done": 0, "frames_expected": 2}
    ]
    task = FarmTask.objects.get(account=account, task_id=77)
    assert task.output_folder == "77_shot"
    event = AuditEvent.objects.get(action="farm.task_create")
    assert (event.actor_name, event.target_id, event.after["task_id"]) == ("farm", str(task.pk), 77)


def test_no_token_is_401_with_how_to_send_one(account, token):
    status, answer = _post(account.pk, {"type": "task_created", "scene": "s"}, None)

    assert status == 401 and "Authorization: Bearer <token>" in answer["error"]["message"]
    assert not FarmTask.objects.exists()


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc"])
def test_a_malformed_authorization_header_is_401(account, token, header):
    response = Client().post(
        f"/api/farm/{account.pk}/events/", data="{}", content_type="application/json", HTTP_AUTHORIZATION=header
    )

    assert response.status_code == 401


def test_a_wrong_token_is_401(account, token):
    status, answer = _post(account.pk, {"type": "task_created", "scene": "s"}, token + "x")

    assert status == 401 and "not the current events token" in answer["error"]["message"]
    assert not FarmTask.objects.exists()


def test_another_account_s_token_is_401(account, token, make_account):
    other = make_account(name="other farm")
    other_token = farm_token_generate(account=other, actor=Actor())

    status, _ = _post(account.pk, {"type": "task_created", "scene": "s"}, other_token)

    assert status == 401
    assert not FarmTask.objects.exists()


def test_a_revoked_token_is_401(account, token):
    farm_token_revoke(account=account, actor=Actor())

    status, _ = _post(account.pk, {"type": "task_created", "scene": "s"}, token)

    assert status == 401


def test_a_replaced_token_is_401_and_the_new_one_works(account, token):
    new = farm_token_generate(account=account, actor=Actor())

    assert _post(account.pk, {"type": "task_created", "scene": "s"}, token)[0] == 401
    assert _post(account.pk, {"type": "task_created", "scene": "s"}, new)[0] == 200


def test_an_account_that_does_not_exist_answers_like_a_wrong_token(token):
    status, _ = _post(987654, {"type": "task_created", "scene": "s"}, token)

    assert status == 401


def test_only_a_digest_of_the_token_is_stored(account, token):
    stored = FarmEventToken.objects.get(account=account)

    assert token not in stored.digest and len(stored.digest) == 64
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {FarmEventToken._meta.db_table}")
        assert token not in repr(cursor.fetchall())
    assert token not in repr(list(AuditEvent.objects.values()))


def test_the_token_never_reaches_the_logs(account, token, caplog):
    with caplog.at_level(logging.DEBUG):
        _post(account.pk, {"type": "task_created", "scene": "s"}, token)
        _post(account.pk, {"type": "task_created", "scene": "s"}, token + "x")
        _post(account.pk, {"type": "nope"}, token)

    assert caplog.records and token not in caplog.text


# --- events -----------------------------------------------------------------------------------------


def test_a_render_driven_through_the_api(account, token, make_farm_task):
    _post(account.pk, {"type": "task_created", "scene": "shot", "frames": 2, "task_id": 10}, token)
    task = FarmTask.objects.get(task_id=10)
    paths = [_frame(account, task, f"f.{n}.exr", b"x" * n) for n in (1, 2)]
    frames = [(1, paths[0]), (2, paths[1])]

    answers = [
        _post(account.pk, {"type": "task_status", "task_id": 10, "status": 5}, token),
        _post(account.pk, [{"type": "frame_finished", "task_id": 10, "path": p, "size": n} for n, p in frames], token),
        _post(account.pk, {"type": "task_finished", "task_id": 10, "status": 25}, token),
    ]

    assert [status for status, _ in answers] == [200, 200, 200]
    assert answers[1][1]["events"][1]["frames_done"] == 2
    task.refresh_from_db()
    assert task.status == 25
    assert sorted(FarmFrame.objects.values_list("path", "size")) == [(paths[0], 1), (paths[1], 2)]


def test_a_frame_announced_twice_is_recorded_once(account, token, make_farm_task):
    task = make_farm_task(account, task_id=11)
    path = _frame(account, task)

    first = _post(account.pk, {"type": "frame_finished", "task_id": 11, "path": path, "size": 100}, token)
    again = _post(account.pk, {"type": "frame_finished", "task_id": 11, "path": path, "size": 100}, token)

    assert (first[1]["events"][0]["outcome"], again[1]["events"][0]["outcome"]) == ("created", "unchanged")
    assert FarmFrame.objects.count() == 1


def test_a_child_task_writes_in_a_layer_folder_of_its_parent(account, token, make_farm_task):
    make_farm_task(account, task_id=20, scene="shot")

    status, answer = _post(account.pk, {"type": "task_created", "scene": "shot", "parent_id": 20, "layer": "beauty"}, token)

    assert status == 200
    child = FarmTask.objects.get(task_id=answer["events"][0]["task_id"])
    assert (child.parent.task_id, child.output_folder) == (20, "20_shot/beauty")


@pytest.mark.parametrize(
    "path",
    ["../escape.exr", "12_shot/../../escape.exr", "/etc/passwd", "12_shot/../13_other/f.exr", "other/f.exr", "12_shot"],
)
def test_a_frame_path_outside_its_task_folder_is_refused(account, token, make_farm_task, path):
    make_farm_task(account, task_id=12, scene="shot")

    status, answer = _post(account.pk, {"type": "frame_finished", "task_id": 12, "path": path, "size": 1}, token)

    assert status == 400 and answer["error"]["message"]
    assert not FarmFrame.objects.exists()


def test_a_symlink_out_of_the_output_area_is_refused(account, token, make_farm_task, tmp_path):
    task = make_farm_task(account, task_id=13, scene="shot")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.exr").write_bytes(b"s")
    folder = connector_for(account).ensure().area_root("output") / task.output_folder
    folder.mkdir(parents=True)
    (folder / "link").symlink_to(outside)

    status, answer = _post(
        account.pk, {"type": "frame_finished", "task_id": 13, "path": "13_shot/link/secret.exr", "size": 1}, token
    )

    # Checked through the output area's endpoint, which never follows a link: refused, naming the link.
    assert status == 400 and "goes through a symlink at 'link'" in answer["error"]["message"]


def test_a_frame_not_written_yet_or_incomplete_is_refused(account, token, make_farm_task):
    task = make_farm_task(account, task_id=14)
    path = _frame(account, task, data=b"x" * 10)

    missing = _post(
        account.pk, {"type": "frame_finished", "task_id": 14, "path": f"{task.output_folder}/none.exr", "size": 1}, token
    )
    short = _post(account.pk, {"type": "frame_finished", "task_id": 14, "path": path, "size": 11}, token)

    assert missing[0] == 400 and "is not in the output area" in missing[1]["error"]["message"]
    assert short[0] == 400 and "holds 10 bytes, not the 11 announced" in short[1]["error"]["message"]


def test_an_unknown_task_is_404_saying_which(account, token):
    status, answer = _post(account.pk, {"type": "frame_finished", "task_id": 555, "path": "555_s/f.exr", "size": 1}, token)

    assert status == 404 and "has no task 555" in answer["error"]["message"]


def test_a_task_id_taken_already_is_409(account, token, make_farm_task):
    make_farm_task(account, task_id=15)

    status, answer = _post(account.pk, {"type": "task_created", "scene": "s", "task_id": 15}, token)

    assert status == 409 and "has a task 15 already" in answer["error"]["message"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b"[]", "no events"),
        (b"42", "must be a JSON object"),
    ],
)
def test_bad_json_is_400_with_a_clear_message(account, token, raw, message):
    status, answer = _post(account.pk, None, token, raw=raw)

    assert status == 400 and message in answer["error"]["message"]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"type": "frame_done", "task_id": 1}, "unknown event type 'frame_done'"),
        ({"task_id": 1}, "unknown event type None"),
        ({"type": "task_created"}, "scene must be"),
        ({"type": "task_created", "scene": "../up"}, "scene must be"),
        ({"type": "task_created", "scene": "a/b"}, "scene must be"),
        ({"type": "task_created", "scene": "s", "frames": -1}, "frames must be between"),
        ({"type": "task_created", "scene": "s", "frames": "many"}, "frames must be a whole number"),
        ({"type": "task_created", "scene": "s", "task_id": True}, "task_id must be a whole number"),
        ({"type": "task_created", "scene": "s", "layer": "l"}, "a layer needs a parent_id"),
        ({"type": "task_status", "task_id": 16}, "status is missing"),
        ({"type": "task_finished", "task_id": 16, "status": 5}, "status 5 does not end a task"),
        ({"type": "frame_finished", "task_id": 16, "path": 3, "size": 1}, "path must be a string"),
        ({"type": "frame_finished", "task_id": 16, "path": "16_shot/a\x00.exr", "size": 1}, "NUL byte"),
        ({"type": "frame_finished", "task_id": 16, "path": "16_shot/.a.exr.rvpart", "size": 1}, "reserved name"),
        ({"type": "frame_finished", "task_id": 16, "path": "16_shot/a.exr", "size": 1e300}, "size must be a whole number"),
        ({"type": "frame_finished", "task_id": 16, "path": "16_shot/" + "a" * 1000, "size": 1}, "at most 1000"),
        ({"type": "frame_finished", "task_id": 2**64, "path": "16_shot/a.exr", "size": 1}, "task_id must be between"),
        ({"type": "task_status", "task_id": 16, "status": 2**40}, "status must be between"),
    ],
)
def test_a_bad_event_is_400_with_a_clear_message(account, token, make_farm_task, event, message):
    make_farm_task(account, task_id=16, scene="shot")

    status, answer = _post(account.pk, event, token)

    assert status == 400, answer
    assert message in answer["error"]["message"]


def test_a_list_with_one_bad_event_records_nothing_and_names_it(account, token):
    events = [{"type": "task_created", "scene": "a", "task_id": 30}, {"type": "task_created", "scene": "b/c"}]

    status, answer = _post(account.pk, events, token)

    assert status == 400 and answer["error"]["message"].startswith("event 1 of 2: scene must be")
    assert "no event of this request was recorded" in answer["error"]["message"]
    assert not FarmTask.objects.exists()


def test_a_huge_body_is_413_and_changes_nothing(account, token):
    events = [{"type": "task_created", "scene": "s" * 90} for _ in range(5000)]

    status, answer = _post(account.pk, events, token)

    assert status == 413 and "larger than" in answer["error"]["message"]
    assert not FarmTask.objects.exists()


def test_too_many_events_in_one_list_is_413(account, token):
    status, answer = _post(account.pk, [{}] * 1001, token)

    assert status == 413 and "at most 1000" in answer["error"]["message"]


def test_a_refused_request_is_audited_with_its_reason(account, token):
    _post(account.pk, {"type": "task_status", "task_id": 999, "status": 5}, token)

    event = AuditEvent.objects.get(action="farm.event")
    assert event.outcome == "refused" and "has no task 999" in event.after["error"]


def test_get_is_not_allowed(account, token):
    response = Client().get(f"/api/farm/{account.pk}/events/", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 405


def test_an_unknown_status_code_is_kept_and_logged(account, token, make_farm_task, caplog):
    task = make_farm_task(account, task_id=17)

    with caplog.at_level(logging.WARNING, logger="transfers.farm.status"):
        status, _ = _post(account.pk, {"type": "task_status", "task_id": 17, "status": 77}, token)

    task.refresh_from_db()
    assert status == 200 and task.status == 77
    assert "unknown task status code 77" in caplog.text


def test_events_for_a_farm_that_reports_its_own_tasks_are_refused(make_account, monkeypatch):
    from transfers.farm.local import LocalFarm

    account = make_account()
    token = farm_token_generate(account=account, actor=Actor())
    monkeypatch.setattr(LocalFarm, "takes_events", False)

    status, answer = _post(account.pk, {"type": "task_created", "scene": "s"}, token)

    assert status == 400 and "takes no farm events" in answer["error"]["message"]
