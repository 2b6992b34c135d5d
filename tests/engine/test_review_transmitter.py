"""Review of the transmitter leg (issue 9): a hostile or broken transmitter binary. Each test runs a tiny
script of its own as the transmitter (argv as the real one's), so it can print or exit anything."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

from transfers.engine.events import Event, FileFinished
from transfers.engine.runner import Control, Move, TransferOptions
from transfers.engine.transmitter import TransmitSpec, run_transmitter_leg

ONE_TRY = TransferOptions(attempts=1, backoff_base=0.1, backoff_cap=0.2)


def _script(tmp_path: Path, body: str) -> str:
    """An executable transmitter stand-in; `body` is Python run with `manifest` (the parsed -L json)."""
    exe = tmp_path / "bin" / "rayvision_transmitter"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text(
        f"#!{sys.executable}\nimport json, os, signal, sys\n"
        "args = sys.argv[1:]\nmanifest = json.load(open(args[args.index('-L') + 1]))\n" + body
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


def _upload(tmp_path: Path, exe: str, count: int = 2) -> tuple[list[FileFinished], list[Path]]:
    folder = tmp_path / "up"
    folder.mkdir()
    paths = []
    for index in range(count):
        path = folder / f"f{index}.bin"
        path.write_bytes(os.urandom(100 + index))
        paths.append(path)
    events: list[Event] = []

    def spec(transmit_type, local, remote, max_speed):  # type: ignore[no-untyped-def]
        return TransmitSpec(exe, "aspera", "127.0.0.1", 1, "1", "1", transmit_type, local, remote, max_speed=max_speed)

    run_transmitter_leg(
        [Move(i + 1, str(p), f"proj/{p.name}") for i, p in enumerate(paths)],
        direction="upload",
        spec=spec,
        work_dir=tmp_path / "work",
        destination_root=None,
        sizes={},
        report=events.append,
        control=Control(),
        options=ONE_TRY,
    )
    return [e for e in events if isinstance(e, FileFinished)], paths


def test_review_a_huge_output_line_does_not_become_a_huge_error_message(tmp_path):
    exe = _script(tmp_path, "sys.stdout.write('x' * 3_000_000 + '\\n'); sys.stdout.flush(); sys.exit(255)\n")

    finished, _ = _upload(tmp_path, exe)

    assert finished and all(not f.ok for f in finished)
    assert max(len(f.error) for f in finished) < 10_000, "a transmitter's line is copied whole into each item's error"


def test_review_undecodable_bytes_and_a_line_with_no_end_do_not_crash_the_leg(tmp_path):
    exe = _script(tmp_path, "sys.stdout.buffer.write(b'\\xff\\xfe\\x00garbage\\x81'); sys.stdout.flush(); sys.exit(2)\n")

    finished, _ = _upload(tmp_path, exe)

    assert [f.ok for f in finished] == [False, False]
    assert all("unexpected exit code 2" in f.error for f in finished)


def test_review_a_transmitter_killed_mid_run_keeps_the_files_it_finished(tmp_path):
    exe = _script(
        tmp_path,
        "first = manifest['asset'][0]['local']\n"
        "print(f'upload file done ({first})', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n",
    )

    finished, paths = _upload(tmp_path, exe)

    by_item = {f.item_id: f for f in finished}
    assert by_item[1].ok and by_item[1].size == paths[0].stat().st_size
    assert not by_item[2].ok and "signal 9" in by_item[2].error


def test_review_matching_output_lines_to_known_paths_does_not_scan_every_path_for_each_line():
    from transfers.engine.transmitter.output import parse_line

    known = frozenset(f"/proj/shot_{i:05d}/frame_{i:05d}.exr" for i in range(20_000))  # a 10 000 file download
    started = time.monotonic()
    for i in range(3_000):
        event = parse_line(f"download file done (/proj/shot_{i:05d}/frame_{i:05d}.exr)", known)
    spent = time.monotonic() - started

    assert event.path == "/proj/shot_02999/frame_02999.exr"
    assert spent < 1.0, f"{spent:.1f}s for 3000 lines: each line is compared with every known path"
