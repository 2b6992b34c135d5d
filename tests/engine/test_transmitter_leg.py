"""run_transmitter_leg through the fake transmitter (tests/fake_transmitter): uploads and downloads."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from tests.fake_transmitter import FakeFox
from transfers.engine.events import BytesSent, Event, FileFinished, FileRetrying
from transfers.engine.hashing import file_checksum
from transfers.engine.runner import Control, Move, RunSummary, TransferOptions
from transfers.engine.transmitter import run_transmitter_leg

FAST = TransferOptions(attempts=3, backoff_base=0.2, backoff_cap=1.0)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def finished(self) -> dict[int, FileFinished]:
        return {e.item_id: e for e in self.events if isinstance(e, FileFinished)}

    def of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


def _files(folder: Path, count: int, size: int = 1000) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"f{index}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def _upload(
    fox: FakeFox,
    tmp_path: Path,
    files: list[Path],
    report: Recorder,
    control: Control | None = None,
    options: TransferOptions = FAST,
) -> RunSummary:
    tasks = [Move(index + 1, str(path), f"proj/{path.name}") for index, path in enumerate(files)]
    return run_transmitter_leg(
        tasks,
        direction="upload",
        spec=fox.spec,
        work_dir=tmp_path / "work",
        destination_root=None,
        sizes={},
        report=report,
        control=control or Control(),
        options=options,
    )


def _download(
    fox: FakeFox,
    tmp_path: Path,
    names: list[str],
    report: Recorder,
    sizes: dict[int, int] | None = None,
    options: TransferOptions = FAST,
) -> tuple[RunSummary, Path]:
    root = tmp_path / "downloads"
    root.mkdir(exist_ok=True)
    tasks = [Move(index + 1, f"shot/{name}", f"out/{name}") for index, name in enumerate(names)]
    summary = run_transmitter_leg(
        tasks,
        direction="download",
        spec=fox.spec,
        work_dir=tmp_path / "work",
        destination_root=root,
        sizes=sizes or {},
        report=report,
        control=Control(),
        options=options,
    )
    return summary, root


def _rendered(fox: FakeFox, names: list[str], size: int = 1000) -> list[Path]:
    return _files(fox.output_area / "shot", len(names), size) and [
        (fox.output_area / "shot" / f"f{i}.bin").rename(fox.output_area / "shot" / name) for i, name in enumerate(names)
    ]


# --- upload --------------------------------------------------------------------------------------


def test_upload_sends_every_file_with_its_checksum(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    files = _files(tmp_path / "assets", 3)
    report = Recorder()
    summary = _upload(fake_transmitter, tmp_path, files, report)
    assert (summary.files_ok, summary.files_failed, summary.stopped, summary.bytes_sent) == (3, 0, False, 3000)
    for index, path in enumerate(files, 1):
        stored = fake_transmitter.input_area / "proj" / path.name
        assert stored.read_bytes() == path.read_bytes()
        assert report.finished()[index].checksum == file_checksum(path)


def test_upload_manifest_names_local_and_server_paths(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    files = _files(tmp_path / "assets", 1)
    _upload(fake_transmitter, tmp_path, files, Recorder())
    manifest = (tmp_path / "work" / "upload.json").read_text()
    assert f'"local": "{files[0]}"' in manifest and '"server": "/proj/f0.bin"' in manifest


def test_manifest_is_private_in_a_private_work_dir(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    _upload(fake_transmitter, tmp_path, _files(tmp_path / "assets", 1), Recorder())
    modes = (stat.S_IMODE((tmp_path / "work").stat().st_mode), stat.S_IMODE((tmp_path / "work" / "upload.json").stat().st_mode))
    assert modes == (0o700, 0o600)


def test_download_list_file_is_private(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    _rendered(fake_transmitter, ["a.exr"])
    _download(fake_transmitter, tmp_path, ["a.exr"], Recorder())
    assert stat.S_IMODE((tmp_path / "work" / "download.list").stat().st_mode) == 0o600


def test_exit_1_runs_again_for_the_files_not_done(
    fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_XMIT_MODE", "retry")
    report = Recorder()
    summary = _upload(fake_transmitter, tmp_path, _files(tmp_path / "assets", 3), report)
    assert summary.files_ok == 3
    assert [f.attempts for f in report.finished().values()] == [1, 2, 2]  # the first file was done by the first run
    assert len(fake_transmitter.runs()) == 2


def test_a_retry_waits_a_backoff_first(fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never the SDK's back-to-back hot loop (bugs #1, #2)."""
    monkeypatch.setenv("FAKE_XMIT_MODE", "retry")
    report = Recorder()
    started = time.monotonic()
    _upload(fake_transmitter, tmp_path, _files(tmp_path / "assets", 2), report)
    delays = {e.delay for e in report.of(FileRetrying)}  # type: ignore[attr-defined]
    assert len(delays) == 1 and FAST.backoff_base / 2 <= delays.pop() <= FAST.backoff_cap
    assert time.monotonic() - started >= FAST.backoff_base / 2


def test_retries_stop_after_the_attempts(fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_XMIT_MODE", "unreachable")
    report = Recorder()
    summary = _upload(fake_transmitter, tmp_path, _files(tmp_path / "assets", 2), report, options=FAST)
    assert (summary.files_failed, len(fake_transmitter.runs())) == (2, FAST.attempts)


def test_unreachable_line_says_so_with_host_and_port(
    fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_XMIT_MODE", "unreachable")
    report = Recorder()
    _upload(fake_transmitter, tmp_path, _files(tmp_path / "assets", 1), report)
    failed = report.finished()[1]
    assert failed.error_code == "line_unreachable"
    assert "line unreachable, will retry" in failed.error and "127.0.0.1:10221" in failed.error


def test_fatal_exit_fails_the_files_at_once(fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_XMIT_MODE", "fatal")
    report = Recorder()
    summary = _upload(fake_transmitter, tmp_path, _files(tmp_path / "assets", 2), report)
    assert (summary.files_failed, len(fake_transmitter.runs()), report.of(FileRetrying)) == (2, 1, [])
    assert {(f.error_code, "exit 255" in f.error) for f in report.finished().values()} == {("transmitter_fatal", True)}


def test_one_file_fail_fails_that_file_only(fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_XMIT_MODE", "fail_one")
    report = Recorder()
    summary = _upload(fake_transmitter, tmp_path, _files(tmp_path / "assets", 3), report)
    failed = report.finished()[1]
    assert (summary.files_ok, summary.files_failed) == (2, 1)
    assert (failed.error_code, "simulated failure" in failed.error) == ("transmitter", True)


def test_stop_ends_the_process_and_leaves_files_pending(
    fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_XMIT_MODE", "slow")
    control = Control()
    report = Recorder()

    def stop_on_bytes(event: Event) -> None:
        report(event)
        if isinstance(event, BytesSent):
            control.request_stop("paused")

    started = time.monotonic()
    summary = _upload(fake_transmitter, tmp_path, _files(tmp_path / "assets", 2), stop_on_bytes, control)  # type: ignore[arg-type]
    assert (summary.stopped, summary.stop_reason, report.finished()) == (True, "paused", {})
    assert time.monotonic() - started < 15  # the fake would take 60 s
    with pytest.raises(ProcessLookupError):
        os.kill(fake_transmitter.runs()[0]["pid"], 0)


def test_speed_change_restarts_with_the_new_limit(
    fake_transmitter: FakeFox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_XMIT_MODE", "slow")
    monkeypatch.setenv("FAKE_XMIT_SECONDS", "1")
    control = Control(max_speed=100)
    report = Recorder()

    def faster_on_bytes(event: Event) -> None:
        report(event)
        if isinstance(event, BytesSent):
            control.set_max_speed(200)

    summary = _upload(fake_transmitter, tmp_path, _files(tmp_path / "assets", 1), faster_on_bytes, control)  # type: ignore[arg-type]
    assert (summary.files_ok, fake_transmitter.speeds()) == (1, ["100", "200"])


# --- download ------------------------------------------------------------------------------------


def test_download_puts_each_file_in_place_with_its_checksum(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    rendered = _rendered(fake_transmitter, ["a.exr", "b.exr"])
    report = Recorder()
    summary, root = _download(fake_transmitter, tmp_path, ["a.exr", "b.exr"], report, sizes={1: 1000, 2: 1000})
    assert (summary.files_ok, summary.files_failed) == (2, 0)
    assert [(root / "out" / p.name).read_bytes() == p.read_bytes() for p in rendered] == [True, True]
    assert report.finished()[1].checksum == file_checksum(rendered[0])


def test_download_leaves_no_staging_folder(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    _rendered(fake_transmitter, ["a.exr"])
    _, root = _download(fake_transmitter, tmp_path, ["a.exr"], Recorder())
    assert sorted(p.name for p in root.iterdir()) == ["out"]


def test_download_asks_for_a_list_with_kept_levels(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    _rendered(fake_transmitter, ["a.exr"])
    _download(fake_transmitter, tmp_path, ["a.exr"], Recorder())
    argv = fake_transmitter.runs()[0]["argv"]
    assert (argv[argv.index("-T") + 1], argv[argv.index("-K") + 1]) == ("download_list", "true")


def test_download_of_a_wrong_size_is_a_failed_verification(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    _rendered(fake_transmitter, ["a.exr"])
    report = Recorder()
    summary, root = _download(
        fake_transmitter, tmp_path, ["a.exr"], report, sizes={1: 999}, options=TransferOptions(attempts=2, backoff_base=0.1)
    )
    failed = report.finished()[1]
    assert (summary.files_failed, failed.error_code, len(fake_transmitter.runs())) == (1, "verify_failed", 2)
    assert failed.error == "shot/a.exr: downloaded 1000 bytes, expected 999 (after 2 runs)"
    assert [e.error_code for e in report.of(FileRetrying)] == ["verify_failed"]  # type: ignore[attr-defined]
    assert not (root / "out" / "a.exr").exists()


def test_download_replaces_a_swapped_in_symlink_without_following_it(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    rendered = _rendered(fake_transmitter, ["a.exr"])
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    root = tmp_path / "downloads"
    (root / "out").mkdir(parents=True)
    (root / "out" / "a.exr").symlink_to(outside)
    summary, _ = _download(fake_transmitter, tmp_path, ["a.exr"], Recorder())
    placed = root / "out" / "a.exr"
    assert (summary.files_ok, outside.read_text(), placed.is_symlink()) == (1, "keep me", False)
    assert placed.read_bytes() == rendered[0].read_bytes()


def test_download_refuses_a_symlinked_folder_in_the_destination(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    _rendered(fake_transmitter, ["a.exr"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "downloads"
    root.mkdir()
    (root / "out").symlink_to(elsewhere)
    report = Recorder()
    summary, _ = _download(fake_transmitter, tmp_path, ["a.exr"], report)
    assert (summary.files_failed, report.finished()[1].error_code, list(elsewhere.iterdir())) == (1, "bad_path", [])


def test_secrets_reach_the_transmitter_only_through_its_environment(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    files = _files(tmp_path / "assets", 1)
    run_transmitter_leg(
        [Move(1, str(files[0]), "proj/f0.bin")],
        direction="upload",
        spec=fake_transmitter.spec,
        work_dir=tmp_path / "work",
        destination_root=None,
        sizes={},
        report=Recorder(),
        control=Control(),
        options=FAST,
        secrets={"ASPERA_SCP_PASS": "s3cret-value"},
    )
    run = fake_transmitter.runs()[0]
    assert "ASPERA_SCP_PASS" in run["env"]
    assert not any("s3cret-value" in arg for arg in run["argv"])


def test_the_transmitter_gets_a_y_on_stdin(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    _upload(fake_transmitter, tmp_path, _files(tmp_path / "assets", 1), Recorder())
    assert fake_transmitter.runs()[0]["stdin"] == "y\n"


def test_a_remote_path_with_a_line_break_is_refused(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    """One name must not become two lines of the download list."""
    root = tmp_path / "downloads"
    root.mkdir()
    report = Recorder()
    run_transmitter_leg(
        [Move(1, "shot/a.exr\n/other/secret.exr", "out/a.exr")],
        direction="download",
        spec=fake_transmitter.spec,
        work_dir=tmp_path / "work",
        destination_root=root,
        sizes={},
        report=report,
        control=Control(),
        options=FAST,
    )
    assert (report.finished()[1].error_code, fake_transmitter.runs()) == ("bad_path", [])


def test_a_relative_local_path_is_refused(fake_transmitter: FakeFox, tmp_path: Path) -> None:
    report = Recorder()
    _upload(fake_transmitter, tmp_path, [Path("assets/f0.bin")], report)
    assert (report.finished()[1].error_code, fake_transmitter.runs()) == ("bad_path", [])
