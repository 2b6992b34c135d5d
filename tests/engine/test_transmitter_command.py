"""TransmitSpec: the SDK's command line as an argv list, with its two documented fixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from transfers.engine.transmitter.command import TRANSMIT_TYPES, TransmitSpec

EXE = "/opt/rv/linux/rayvision_transmitter"


def _spec(**changes: object) -> TransmitSpec:
    values: dict[str, object] = {
        "exe": EXE,
        "engine": "aspera",
        "host": "127.0.0.1",
        "port": 10221,
        "storage_id": 10201,
        "user_id": 100001,
        "transmit_type": "upload_json",
        "local": "/data/upload.json",
    }
    values.update(changes)
    return TransmitSpec(**values)  # type: ignore[arg-type]


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_argv_follows_the_sdk_order_and_values() -> None:
    assert _spec().argv() == [
        EXE,
        *("-E", "aspera", "-H", "127.0.0.1", "-P", "10221", "-S", "10201", "-U", "100001"),
        *("-T", "upload_json", "-L", "/data/upload.json", "-R", "/", "-r", "2", "-K", "false"),
        *("-s", "1048576", "-p", "0"),
    ]


@pytest.mark.parametrize("transmit_type", sorted(TRANSMIT_TYPES))
def test_argv_names_each_transmit_type(transmit_type: str) -> None:
    argv = _spec(transmit_type=transmit_type, local="/l", remote="/r", keep_path="true").argv()
    assert (_flag(argv, "-T"), _flag(argv, "-L"), _flag(argv, "-R"), _flag(argv, "-K")) == (transmit_type, "/l", "/r", "true")


def test_a_path_with_quotes_and_dollars_is_one_argument() -> None:
    local = '/data/it\'s "$HOME" `x`.json'
    assert _flag(_spec(local=local).argv(), "-L") == local


def test_max_speed_none_is_the_sdk_default() -> None:
    assert _flag(_spec(max_speed=None).argv(), "-s") == "1048576"


def test_max_speed_is_passed_in_kb_per_second() -> None:
    assert _flag(_spec(max_speed=2000).argv(), "-s") == "2000"


def test_config_flag_is_left_out_without_a_db_config() -> None:
    """The SDK passes -C "None" (bug #31)."""
    assert "-C" not in _spec(db_config=None).argv()


def test_config_flag_names_the_db_config_when_given() -> None:
    assert _flag(_spec(db_config="/data/db.ini").argv(), "-C") == "/data/db.ini"


@pytest.mark.parametrize(("network_mode", "protocol"), [(0, "0"), (1, "2"), (2, "1")])
def test_network_mode_is_translated_to_the_transmitters_protocol(network_mode: int, protocol: str) -> None:
    """SDK: 1 TCP, 2 UDP; transmitter -p: 1 UDP, 2 TCP (bug #15)."""
    assert _flag(_spec(network_mode=network_mode).argv(), "-p") == protocol


@pytest.mark.parametrize(
    "change",
    [{"engine": "raysyncproxy"}, {"transmit_type": "upload"}, {"network_mode": 3}, {"keep_path": "yes"}, {"max_speed": 0}],
)
def test_bad_values_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _spec(**change)


def test_secrets_go_to_the_environment_not_argv(tmp_path: Path) -> None:
    spec = _spec()
    env = spec.env(tmp_path, {"ASPERA_SCP_PASS": "s3cret-value"})
    assert env["ASPERA_SCP_PASS"] == "s3cret-value"
    assert not any("s3cret-value" in arg for arg in spec.argv())


def test_environment_names_the_library_and_log_folders(tmp_path: Path) -> None:
    env = _spec().env(tmp_path / "log")
    assert (env["LD_LIBRARY_PATH"], env["RAYVISION_LOG"]) == ("/opt/rv/linux", str(tmp_path / "log"))


def test_environment_does_not_pass_on_the_workers_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:pw@db/rvweb")
    assert "DATABASE_URL" not in _spec().env(tmp_path)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("host", "-C/etc/passwd"),
        ("host", "farm host"),
        ("host", ""),
        ("port", 0),
        ("port", 70_000),
        ("storage_id", "-S1"),
        ("user_id", "1 -r 99"),
        ("local", "-L/x"),
        ("remote", "--config=/x"),
    ],
)
def test_a_value_that_could_read_as_another_flag_is_refused(field, value):
    with pytest.raises(ValueError):
        _spec(**{field: value})


def test_names_and_addresses_are_taken_as_hosts():
    for host in ("render-client.raysync.cn", "127.0.0.1", "[::1]", "ct1_line.example"):
        assert _spec(host=host).argv()[_spec(host=host).argv().index("-H") + 1] == host
