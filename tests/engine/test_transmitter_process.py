"""run_transmitter: one process of the (fake) transmitter, its exit code as success / retry / fatal."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path

import pytest

from tests.fake_transmitter import FakeFox
from transfers.engine.transmitter.output import FileDone, OutputEvent
from transfers.engine.transmitter.process import ProcessResult, run_transmitter


def _run(
    fox: FakeFox, tmp_path: Path, stop: threading.Event | None = None, grace: float = 5.0
) -> tuple[ProcessResult, list[OutputEvent]]:
    asset = tmp_path / "a.bin"
    asset.write_bytes(b"x" * 100)
    manifest = tmp_path / "upload.json"
    manifest.write_text(json.dumps({"asset": [{"local": str(asset), "server": "/a.bin"}]}))
    events: list[OutputEvent] = []
    log_dir = tmp_path / "log"
    log_dir.mkdir(exist_ok=True)
    spec = fox.spec("upload_json", str(manifest), "/", None)
    result = run_transmitter(spec, log_dir=log_dir, stop=stop or threading.Event(), on_event=events.append, grace=grace)
    return result, events


def test_exit_0_is_success_with_file_events(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    result, events = _run(fake_transmitter, tmp_path)
    assert (result.status, result.exit_code) == ("success", 0)
    assert FileDone("upload", str(tmp_path / "a.bin")) in events


def test_exit_1_is_retryable(fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_XMIT_MODE", "exit_1")
    result, _ = _run(fake_transmitter, tmp_path)
    assert (result.status, result.retryable) == ("retry", True)


def test_exit_255_is_fatal(fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_XMIT_MODE", "fatal")
    result, _ = _run(fake_transmitter, tmp_path)
    assert (result.status, "exit 255" in result.message) == ("fatal", True)


def test_another_exit_code_is_fatal_and_named(fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK retried such codes forever without a pause (bug #1)."""
    monkeypatch.setenv("FAKE_XMIT_MODE", "exit_9")
    result, _ = _run(fake_transmitter, tmp_path)
    assert (result.status, result.message) == ("fatal", "transmitter failed with unexpected exit code 9: simulated exit 9")


def test_a_connection_exception_is_a_retryable_unreachable_line(
    fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_XMIT_MODE", "unreachable")
    result, _ = _run(fake_transmitter, tmp_path)
    assert (result.status, result.message) == ("retry", "line unreachable, will retry (aspera line 127.0.0.1:10221)")


def test_the_output_tail_is_kept_for_messages(fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_XMIT_MODE", "fatal")
    result, _ = _run(fake_transmitter, tmp_path)
    assert result.tail[-1] == "fatal: simulated fatal error"


def test_a_process_ignoring_sigterm_is_killed_after_the_grace(
    fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_XMIT_MODE", "slow")
    monkeypatch.setenv("FAKE_XMIT_IGNORE_TERM", "1")
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    result, _ = _run(fake_transmitter, tmp_path, stop, grace=0.5)
    assert (result.status, result.exit_code) == ("stopped", None)
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.kill(fake_transmitter.runs()[0]["pid"], 0)


def test_a_transmitter_silent_too_long_is_stopped_and_retryable(
    fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_XMIT_MODE", "silent")
    monkeypatch.setenv("FAKE_XMIT_SECONDS", "60")
    spec = dataclasses.replace(fake_transmitter.spec("upload_json", str(tmp_path / "none.json"), "/", None), silence=0.5)
    log_dir = tmp_path / "log"
    log_dir.mkdir()

    result = run_transmitter(spec, log_dir=log_dir, stop=threading.Event(), grace=1.0)

    assert (result.status, result.retryable) == ("retry", True)
    assert "printed nothing" in result.message and "will retry" in result.message
    assert result.exit_code is None, "stopped by rvweb, not ended by itself"
