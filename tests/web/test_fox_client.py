"""The Fox farm's REST client: the signature (both documented vectors), the headers and envelope, the
typed errors, and retrying only what is safe to retry, against the fake farm (tests/fox_farm.py)."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from transfers.farm import FarmError
from transfers.farm.fox import errors
from transfers.farm.fox.client import CONFIG, FRAMES, OUTPUT_FILES, PROFILE, TASK_INFO, TASK_LIST, FoxClient
from transfers.farm.fox.errors import FoxApiError, FoxBadResponse, FoxCredentialsMissing, FoxUnreachable
from transfers.farm.fox.signing import canonical, flatten, sign

DOC_MESSAGE = (
    "[POST]task.renderbus.com:/api/render/common/queryPlatforms&UTCTimestamp=1535957371"
    "&accessId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&channel=7&nonce=11886&platform=1&version=1.0.0&zone=2"
)


def _client(fox_farm, who="main", **kwargs):
    delays: list[float] = []
    client = FoxClient(**{**fox_farm.account_kwargs(who), **kwargs}, sleep=delays.append)
    client.delays = delays
    return client


# --- signing ------------------------------------------------------------------------------------------


def test_the_doc_example_canonical_string_signs_to_the_documented_signature():
    headers = {
        "accessId": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        "channel": "7",
        "nonce": "11886",
        "platform": "1",
        "UTCTimestamp": "1535957371",
        "version": "1.0.0",
    }

    message = canonical("task.renderbus.com", "/api/render/common/queryPlatforms", {**headers, "zone": 2})

    assert message == DOC_MESSAGE
    assert sign("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", message) == "6tvuz8bgDCz5vtS3amuMWVbOqzhaeWaOhNcWMqx9zcg="


def test_the_sdk_test_vector_signs_to_its_documented_signature():
    assert sign("test_key", "test_msg") == "TC9wro8movj4HGMphrpEdES3oBdPsq+y+2tAt6kM/Tw="


def test_flatten_joins_nested_keys_with_a_dot_and_appends_list_indexes_without_a_separator():
    flat = flatten({"taskIds": [7, 8], "renderEnvs": [{"pluginIds": [1, 2, 3]}], "a": {"b": {"c": "x"}}})

    assert flat == {
        "taskIds0": "7",
        "taskIds1": "8",
        "renderEnvs0.pluginIds0": "1",
        "renderEnvs0.pluginIds1": "2",
        "renderEnvs0.pluginIds2": "3",
        "a.b.c": "x",
    }


def test_flatten_drops_empty_lists_and_objects():
    assert flatten({"ids": [], "opts": {}, "keep": 1}) == {"keep": "1"}


def test_flatten_writes_scalars_the_way_python_str_does():
    assert flatten({"t": True, "f": False, "n": None, "x": 1.5}) == {"t": "True", "f": "False", "n": "None", "x": "1.5"}


def test_canonical_pairs_are_sorted_by_byte_order_and_the_body_is_merged_in():
    assert canonical("h:1", "/p", {"b": 1, "Z": 2, "a": 3}) == "[POST]h:1:/p&Z=2&a=3&b=1"


# --- the wire -----------------------------------------------------------------------------------------


def test_a_call_returns_the_envelope_data(fox_farm):
    profile = _client(fox_farm).user_profile()

    assert profile["userId"] == 100001 and profile["userName"] == "studio-main"


def test_every_call_is_a_signed_json_post_with_the_sdk_headers(fox_farm):
    _client(fox_farm).transfer_config()

    (request,) = fox_farm.calls(CONFIG)
    headers = request["headers"]
    assert request["method"] == "POST" and request["body"] == {}
    assert headers["Accessid"] == "AKID-FOX-MAIN" and headers["Channel"] == "4" and headers["Version"] == "2.0.0"
    assert headers["Platform"] == "2" and headers["Languageflag"] == "0" and headers["Content-Type"] == "application/json"
    assert len(headers["Nonce"]) == 6 and headers["Nonce"].isdigit() and headers["Signature"]
    assert fox_farm.rejected == []


def test_the_body_is_ascii_escaped_json(fox_farm):
    client = _client(fox_farm)

    client.call(TASK_INFO, {"taskIds": [1001], "searchKeyword": "移动"})

    assert fox_farm.calls(TASK_INFO)[0]["body"]["searchKeyword"] == "移动" and fox_farm.rejected == []


def test_task_info_sends_the_task_ids_as_a_list_of_numbers(fox_farm):
    _client(fox_farm).task_info(["1001", 2001])

    assert fox_farm.calls(TASK_INFO)[0]["body"] == {"taskIds": [1001, 2001]}


def test_a_bare_domain_is_https_and_the_signed_host_has_no_scheme():
    client = FoxClient("task.foxrenderfarm.com", "id", "key", "2")

    assert client.base_url == "https://task.foxrenderfarm.com" and client.host == "task.foxrenderfarm.com"
    assert client.language_flag == "0"


def test_a_renderbus_domain_sends_language_flag_1():
    assert FoxClient("task.renderbus.com", "id", "key", "2").language_flag == "1"


def test_a_missing_access_id_is_refused_before_any_call():
    with pytest.raises(FoxCredentialsMissing, match="no access id"):
        FoxClient("task.foxrenderfarm.com", "", "key", "2")


def test_a_missing_access_key_is_refused_before_any_call():
    with pytest.raises(FoxCredentialsMissing, match="no access key"):
        FoxClient("task.foxrenderfarm.com", "AKID", "", "2")


# --- errors and retries -------------------------------------------------------------------------------


def test_a_wrong_key_is_signature_invalid_and_is_not_retried(fox_farm):
    fox_farm.expect_rejections()
    client = _client(fox_farm, access_key="not-the-key")

    with pytest.raises(errors.SignatureInvalid) as caught:
        client.user_profile()

    assert caught.value.code == 611 and caught.value.path == PROFILE
    assert len(fox_farm.calls()) == 1 and len(fox_farm.rejected) == 1


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (611, errors.SignatureInvalid),
        (610, errors.SignatureExpired),
        (602, errors.NeedLogin),
        (403, errors.Forbidden),
        (605, errors.Forbidden),
        (404, errors.NotFound),
        (600, errors.ParameterInvalid),
        (601, errors.ParameterInvalid),
        (804, errors.AccountLocked),
        (812, errors.IpProhibited),
        (608, errors.AreaMismatch),
        (500, errors.ServerError),
        (1000, errors.ServerError),
    ],
)
def test_each_documented_code_raises_its_own_error_type(fox_farm, code, kind):
    fox_farm.fail_next(code, times=10)

    with pytest.raises(kind) as caught:
        _client(fox_farm, attempts=1).bids()

    assert caught.value.code == code and f"code {code}" in str(caught.value)


def test_a_code_outside_the_table_is_a_plain_api_error(fox_farm):
    fox_farm.fail_next(913)

    with pytest.raises(FoxApiError) as caught:
        _client(fox_farm).bids()

    assert type(caught.value) is FoxApiError and caught.value.code == 913


def test_an_expired_signature_is_retried_with_a_fresh_nonce(fox_farm):
    fox_farm.fail_next(610)
    client = _client(fox_farm)

    assert client.bids()["input_bid"] == "10201"

    first, second = fox_farm.calls()
    assert first["headers"]["Nonce"] != second["headers"]["Nonce"] and len(client.delays) == 1


def test_an_http_502_without_an_envelope_is_retried(fox_farm):
    fox_farm.fail_next(http_status=502, body="<html>Bad Gateway</html>")
    client = _client(fox_farm)

    assert client.user_settings()["downloadDisable"] == 0
    assert len(fox_farm.calls()) == 2


def test_server_errors_are_retried_a_bounded_number_of_times_with_growing_bounded_delays(fox_farm):
    fox_farm.fail_next(500, times=10)
    client = _client(fox_farm, attempts=5, backoff=1.0, max_backoff=3.0)

    with pytest.raises(errors.ServerError):
        client.bids()

    assert len(fox_farm.calls()) == 5
    bounds = [(0.5, 1.0), (1.0, 2.0), (1.5, 3.0), (1.5, 3.0)]  # 1, 2, 4 -> 3, 8 -> 3, each with jitter down to half
    assert [low <= delay <= high for delay, (low, high) in zip(client.delays, bounds, strict=True)] == [True] * 4


def test_a_non_json_answer_is_a_bad_response_and_is_not_retried(fox_farm):
    fox_farm.fail_next(body="<html>login portal</html>")

    with pytest.raises(FoxBadResponse, match="HTTP 200 and no API envelope"):
        _client(fox_farm).bids()

    assert len(fox_farm.calls()) == 1


def test_a_parameter_error_is_not_retried(fox_farm):
    fox_farm.fail_next(600, times=5)

    with pytest.raises(errors.ParameterInvalid):
        _client(fox_farm).task_info([1])

    assert len(fox_farm.calls()) == 1


def test_a_call_that_is_not_idempotent_is_never_retried(fox_farm):
    fox_farm.fail_next(http_status=502, body="bad gateway")
    client = _client(fox_farm)

    with pytest.raises(FoxBadResponse):
        client.call("/api/render/submit/createTask", {"count": 1, "taskUserLevel": 50}, idempotent=False)

    assert len(fox_farm.calls()) == 1 and client.delays == []


def test_a_farm_that_refuses_connections_is_unreachable_after_the_retries():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    delays: list[float] = []
    client = FoxClient(f"http://127.0.0.1:{port}", "AKID", "key", "2", attempts=3, sleep=delays.append)

    with pytest.raises(FoxUnreachable, match="cannot be reached"):
        client.bids()

    assert len(delays) == 2


def test_a_farm_that_answers_too_slowly_is_unreachable(fox_farm):
    fox_farm.fail_next(delay=1.0)

    with pytest.raises(FoxUnreachable, match="did not answer"):
        _client(fox_farm, timeout=(2, 0.2), attempts=1).bids()


def test_neither_the_key_nor_the_signature_is_ever_logged(fox_farm, caplog):
    caplog.set_level(logging.DEBUG)
    fox_farm.fail_next(500)
    client = _client(fox_farm)

    client.user_profile()
    fox_farm.fail_next(611)
    with pytest.raises(errors.SignatureInvalid):
        client.bids()

    signatures = {request["headers"]["Signature"] for request in fox_farm.calls()}
    logged = caplog.text + repr(client)
    assert "fox-main-secret-key" not in logged and not any(value in logged for value in signatures)
    assert json.dumps(fox_farm.account_kwargs()["access_key"]) not in logged


def test_the_tests_never_reach_the_real_farm():
    client = FoxClient("task.foxrenderfarm.com", "AKID", "key", "2", attempts=1)

    with pytest.raises(FoxUnreachable, match="cannot be reached"):
        client.bids()


def test_task_list_asks_for_a_page_and_the_statuses_given(fox_farm):
    data = _client(fox_farm).task_list(page=1, page_size=5, status_list=[25])

    assert fox_farm.calls(TASK_LIST)[0]["body"] == {"pageNum": 1, "pageSize": 5, "statusList": [25]}
    assert {item["taskStatus"] for item in data["items"]} == {25}


def test_frames_asks_for_a_child_task_s_frames_at_most_a_hundred_a_page(fox_farm):
    data = _client(fox_farm).frames(2002, page_size=500)

    assert fox_farm.calls(FRAMES)[0]["body"] == {"taskId": 2002, "pageNum": 1, "pageSize": 100}
    assert [frame["frameIndex"] for frame in data["items"]] == ["1-1", "2-2", "3-3"]


def test_output_files_lists_one_folder_and_passes_the_task_id_when_given(fox_farm):
    fox_farm.add_output("1001_done_shot/a.exr", 4)

    (entry,) = _client(fox_farm).output_files("/1001_done_shot", task_id=1001)

    assert fox_farm.calls(OUTPUT_FILES)[0]["body"] == {"treePath": "/1001_done_shot", "taskId": 1001}
    assert (entry["fileName"], entry["fileSize"], entry["directory"]) == ("a.exr", 4, False)


def test_every_fox_error_is_a_farm_error_for_callers_that_serve_every_farm(fox_farm):
    fox_farm.fail_next(804)

    with pytest.raises(FarmError, match="the account is locked"):
        _client(fox_farm).bids()
