"""install_transmitter: the pinned SDK wheel's linux transmitter into the data dir, and the real binary
against a closed port on 127.0.0.1.

These need the real wheel (downloaded once into the test data dir, tests/transmitter_wheel.py); they
are skipped only when it cannot be downloaded, saying so.
"""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.fake_transmitter import FAKE_DIR
from tests.transmitter_wheel import cached_wheel
from transfers.engine.transmitter.command import TransmitSpec
from transfers.engine.transmitter.process import run_transmitter
from transfers.transmitter_install import SHA256, Installed, InstallError, install_transmitter, installed, transmitter_path


@pytest.fixture(scope="module")
def wheel() -> Path:
    found, reason = cached_wheel()
    if found is None:
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def data_dir(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One install shared by the tests that only look at it (extracting ~110 MB takes a while)."""
    base = tmp_path_factory.mktemp("data")
    install_transmitter(data_dir=base, wheel=wheel)
    return base


@pytest.fixture(scope="module")
def done(data_dir: Path) -> Installed:
    result = installed(data_dir=data_dir)
    assert result is not None
    return result


def test_install_records_what_it_installed(data_dir: Path, done: Installed) -> None:
    record = json.loads((data_dir / "transmitter" / "3.1.8" / "installed.json").read_text())
    assert record == {
        "package": "rayvision-sync",
        "version": "3.1.8",
        "sha256": SHA256,
        "transmitter_version": "1.1.5",
        "path": str(data_dir / "transmitter" / "3.1.8" / "rayvision_transmitter"),
    }


def test_install_extracts_only_the_linux_transmission_files(data_dir: Path, done: Installed) -> None:
    folder = data_dir / "transmitter" / "3.1.8"
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert names == [
        "aspera/ascmd",
        "aspera/ascp",
        "aspera/aspera-license",
        "aspera/aspshell",
        "aspera/astokengen",
        "installed.json",
        "raysync/killproxy.sh",
        "raysync/raysyncproxy",
        "rayvision_transmitter",
    ]


def test_installed_files_are_never_group_or_world_writable(data_dir: Path, done: Installed) -> None:
    """The SDK chmods them 777 before every command (bug #18)."""
    writable = [p for p in (data_dir / "transmitter").rglob("*") if p.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)]
    assert writable == []


def test_programs_are_0755_and_other_files_0644(data_dir: Path, done: Installed) -> None:
    folder = data_dir / "transmitter" / "3.1.8"
    modes = {
        name: stat.S_IMODE((folder / name).stat().st_mode)
        for name in ("rayvision_transmitter", "aspera/ascp", "aspera/aspera-license")
    }
    assert modes == {"rayvision_transmitter": 0o755, "aspera/ascp": 0o755, "aspera/aspera-license": 0o644}


def test_a_second_install_does_nothing(data_dir: Path, wheel: Path, done: Installed) -> None:
    record = data_dir / "transmitter" / "3.1.8" / "installed.json"
    before = record.stat().st_mtime_ns
    result, fresh = install_transmitter(data_dir=data_dir, wheel=wheel)
    assert (result, fresh, record.stat().st_mtime_ns) == (done, False, before)


def test_a_wheel_with_another_sha256_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "rayvision_sync-3.1.8-py2.py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("rayvision_sync/transmission/linux/rayvision_transmitter", "#!/bin/sh\necho evil\n")
    with pytest.raises(InstallError, match=r"refusing .*: its sha256 is [0-9a-f]{64}, expected " + SHA256):
        install_transmitter(data_dir=tmp_path, wheel=fake)
    assert installed(data_dir=tmp_path) is None


def test_command_refuses_a_bad_wheel_with_a_clear_message(tmp_path: Path, settings: pytest.FixtureRequest) -> None:
    settings.DATA_DIR = tmp_path  # type: ignore[attr-defined]
    fake = tmp_path / "rayvision_sync-3.1.8-py2.py3-none-any.whl"
    fake.write_bytes(b"not a wheel")
    with pytest.raises(CommandError, match="expected " + SHA256):
        call_command("install_transmitter", wheel=fake)


def test_command_installs_then_says_already_installed(
    tmp_path: Path, wheel: Path, settings: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.DATA_DIR = tmp_path  # type: ignore[attr-defined]
    call_command("install_transmitter", wheel=wheel)
    call_command("install_transmitter", wheel=wheel)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "transmitter 1.1.5 (rayvision-sync 3.1.8) installed",
        "transmitter 1.1.5 (rayvision-sync 3.1.8) already installed",
    ]


def test_transmitter_path_prefers_the_explicit_setting(tmp_path: Path, settings: pytest.FixtureRequest) -> None:
    settings.TRANSMITTER_PATH = "/opt/vendor/rayvision_transmitter"  # type: ignore[attr-defined]
    assert transmitter_path() == Path("/opt/vendor/rayvision_transmitter")


def test_transmitter_path_then_takes_the_installed_one(data_dir: Path, done: Installed, settings: pytest.FixtureRequest) -> None:
    settings.TRANSMITTER_PATH = ""  # type: ignore[attr-defined]
    settings.DATA_DIR = data_dir  # type: ignore[attr-defined]
    assert transmitter_path() == done.path


def test_transmitter_path_then_looks_on_path(
    tmp_path: Path, settings: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.TRANSMITTER_PATH = ""  # type: ignore[attr-defined]
    settings.DATA_DIR = tmp_path  # type: ignore[attr-defined]
    monkeypatch.setenv("PATH", str(FAKE_DIR))
    assert transmitter_path() == FAKE_DIR / "rayvision_transmitter"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound (so nobody else takes it), never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_real_transmitter_reports_a_closed_line_as_retryable(done: Installed, tmp_path: Path, closed_port: int) -> None:
    """The real binary (measured: about 12 s, "ascp: Failed to open TCP connection", exit 1)."""
    asset = tmp_path / "a.txt"
    asset.write_text("hello")
    manifest = tmp_path / "upload.json"
    manifest.write_text(json.dumps({"asset": [{"local": str(asset), "server": "/a.txt"}]}))
    log_dir = tmp_path / "log"
    log_dir.mkdir(mode=0o700)
    spec = TransmitSpec(
        exe=str(done.path),
        engine="aspera",
        host="127.0.0.1",
        port=closed_port,
        storage_id=10201,
        user_id=100001,
        transmit_type="upload_json",
        local=str(manifest),
    )
    started = time.monotonic()
    result = run_transmitter(spec, log_dir=log_dir, stop=threading.Event(), timeout=120)
    elapsed = time.monotonic() - started
    assert (result.status, result.exit_code) == ("retry", 1), result.tail
    assert result.message.startswith("line unreachable, will retry") and f"127.0.0.1:{closed_port}" in result.message
    assert elapsed < 120
