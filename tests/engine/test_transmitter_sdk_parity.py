"""Our argv against the SDK's own `RayvisionTransfer.create_cmd` (rayvision-sync 3.1.8), case by case.

The SDK's transfer.py (with the two modules it imports) is taken from the pinned wheel and run in a
subprocess (never imported into the test process; its os.system, which would `chmod 777` the
transmitter's folder, is disabled there). Its shell string is split after `echo y|` and compared flag
for flag with TransmitSpec.argv(): equal except for the two documented fixes, asserted explicitly.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from itertools import product
from typing import Any

import pytest

from tests.transmitter_wheel import cached_wheel
from transfers.engine.transmitter.command import TransmitSpec

EXE = "/opt/rv sdk/linux/rayvision_transmitter"
USER_INFO = {"config_bid": "30201", "input_bid": "10201", "output_bid": "20201", "user_id": "100001"}
_SDK_FILES = ("transfer.py", "constants.py", "exception.py")

_RUNNER = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
os.system = lambda command: 0  # create_cmd runs `chmod 777 -R <folder>/*` (bug #18): not here
from rayvision_sync.transfer import RayvisionTransfer
out = {}
for case in json.load(sys.stdin):
    transfer = RayvisionTransfer.__new__(RayvisionTransfer)
    transfer.transmitter_exe = case["exe"]
    transfer.user_id = case["user_info"]["user_id"]
    transfer.user_info = case["user_info"]
    transfer.transport_info = {}
    out[case["id"]] = transfer.create_cmd(case["cmd_params"], **case["kwargs"])
json.dump(out, sys.stdout)
"""


@dataclass(frozen=True)
class Case:
    """How the SDK's upload.py / download.py call create_cmd for one kind of transfer."""

    name: str
    transmit_type: str
    local: str
    remote: str
    keep: str
    bid_key: str
    db_ini: str | None = None
    bid: str | None = None
    main_user_id: str | None = None
    main_input_bid: str | None = None


BASE_CASES = [
    Case("upload_json asset", "upload_json", "/data/my scenes/upload.json", "/", "false", "input_bid"),
    Case(
        "upload_json with a db ini",
        "upload_json",
        "/data/upload.json",
        "/",
        "false",
        "input_bid",
        db_ini="/root/renderfarm_sdk/db/upload.ini",
    ),
    Case("upload config", "upload_path", "/data/cfg/task.json", "/12345/cfg/task.json", "false", "config_bid"),
    Case(
        "download_path formatted", "download_path", "/dl", "12345_scene", "true", "output_bid", bid="20201", main_user_id="100001"
    ),
    Case("download_path plain", "download_path", "/dl", "12345_scene", "false", "output_bid", bid="20201", main_user_id="100001"),
    Case("upload_list", "upload_list", "/data/upload_list.txt", "/", "false", "input_bid"),
    Case("download_list", "download_list", "/dl", "/data/remote.list", "true", "output_bid", bid="20201", main_user_id="100001"),
    Case(
        "sub-account upload",
        "upload_json",
        "/data/upload.json",
        "/",
        "false",
        "input_bid",
        main_user_id="900001",
        main_input_bid="50201",
    ),
]
SPEEDS = [None, 2000, 1]
MODES = [0, 1, 2]
CASES = [(case, speed, mode) for (case, speed), mode in zip(product(BASE_CASES, SPEEDS), MODES * len(BASE_CASES), strict=True)]


def _case_id(case: Case, speed: int | None, mode: int) -> str:
    return f"{case.name}, max_speed={speed}, network_mode={mode}"


def _sdk_call(case: Case, speed: int | None, mode: int) -> dict[str, Any]:
    max_speed = "1048576" if speed is None else str(speed)  # upload.py / download.py fill None so
    return {
        "id": _case_id(case, speed, mode),
        "exe": EXE,
        "user_info": USER_INFO,
        "cmd_params": [case.transmit_type, case.local, case.remote, max_speed, case.keep, case.bid_key],
        "kwargs": {
            "db_ini_path": case.db_ini,
            "engine_type": "aspera",
            "server_ip": "127.0.0.1",
            "server_port": "10221",
            "main_user_id": case.main_user_id,
            "main_input_bid": case.main_input_bid,
            "bid": case.bid,
            "network_mode": mode,
        },
    }


def _our_spec(case: Case, speed: int | None, mode: int) -> TransmitSpec:
    return TransmitSpec(
        exe=EXE,
        engine="aspera",
        host="127.0.0.1",
        port="10221",
        storage_id=case.main_input_bid or case.bid or USER_INFO[case.bid_key],
        user_id=case.main_user_id or USER_INFO["user_id"],
        transmit_type=case.transmit_type,  # type: ignore[arg-type]
        local=case.local,
        remote=case.remote,
        keep_path=case.keep,
        max_speed=speed,
        network_mode=mode,
        db_config=case.db_ini,
    )


@pytest.fixture(scope="module")
def sdk_commands(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    wheel, reason = cached_wheel()
    if wheel is None:
        pytest.skip(reason)
    sdk = tmp_path_factory.mktemp("sdk")
    package = sdk / "rayvision_sync"
    package.mkdir()
    (package / "__init__.py").write_text("")  # the real one imports pkg_resources and the whole SDK
    with zipfile.ZipFile(wheel) as archive:
        for name in _SDK_FILES:
            (package / name).write_bytes(archive.read(f"rayvision_sync/{name}"))
    calls = [_sdk_call(*case) for case in CASES]
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(sdk)], input=json.dumps(calls), capture_output=True, text=True, timeout=60, check=True
    )
    commands: dict[str, str] = json.loads(done.stdout)
    return commands


def _sdk_argv(command: str) -> list[str]:
    prefix, _, rest = command.partition("|")
    assert prefix == "echo y"
    return shlex.split(rest)


@pytest.mark.parametrize(("case", "speed", "mode"), CASES, ids=[_case_id(*case) for case in CASES])
def test_argv_matches_the_sdks_command(sdk_commands: dict[str, str], case: Case, speed: int | None, mode: int) -> None:
    sdk = _sdk_argv(sdk_commands[_case_id(case, speed, mode)])
    ours = _our_spec(case, speed, mode).argv()
    # fix 1 (bug #31): the SDK passes -C "None" without a DB config; we leave -C out
    at = sdk.index("-C")
    if case.db_ini is None:
        assert sdk[at + 1] == "None" and "-C" not in ours
        del sdk[at : at + 2]
    # fix 2 (bug #15): network_mode 1 (TCP) / 2 (UDP) is passed through by the SDK; we translate it
    assert sdk[-2:] == ["-p", str(mode)]
    assert ours[-2:] == ["-p", {0: "0", 1: "2", 2: "1"}[mode]]
    assert ours[:-2] == sdk[:-2]
