"""Benchmark 14: an upload through the vendor's transmitter, rvweb's leg vs the SDK's way.

Both sides run the same transmitter (the test fake, tests/fake_transmitter: the real one needs the
farm) over the same files into a fresh storage folder. The SDK's way is its command line through a
shell (`echo y|"<exe>" -E ... -T upload_json ...`, as create_cmd builds it) and the exit code, nothing
else. rvweb's leg (engine.transmitter.run_transmitter_leg) writes the manifest (0600), runs the same
binary as an argv list, reads every output line into progress events, and hashes each file reported done
(xxh3-128) so that the ledger and the job know what was sent: the ratio is the price of that.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
from pathlib import Path

from tests.bench.common import Config, Row, interleaved, log, timed, write_tree
from tests.fake_transmitter import FAKE_EXE
from transfers.engine.runner import Control, Move, TransferOptions
from transfers.engine.transmitter import TransmitSpec, run_transmitter_leg
from transfers.engine.transmitter.command import TransmitType

STORAGE, USER = "10201", "100001"


def _spec(storage: Path) -> TransmitSpec:
    return TransmitSpec(
        exe=str(FAKE_EXE), engine="aspera", host="127.0.0.1", port=9, storage_id=STORAGE, user_id=USER,
        transmit_type="upload_json", local="", extra_env=(("FAKE_FOX_STORAGE", str(storage)),),
    )  # fmt: skip


def bench(config: Config) -> Row:
    count = 200 if config.quick else 2_000
    row = Row(14, f"{count:,} files through the transmitter (fake)", goal="<= 1.3x the SDK's way")
    source = config.root / "xmit-src"
    paths = write_tree(source, count, 64 << 10)
    log(f"{len(paths)} files of 64 KiB in {source}")
    moves = [Move(item_id=n, source=str(p), destination=f"shots/{p.relative_to(source).as_posix()}") for n, p in enumerate(paths)]

    def sdk_way(_: int) -> float:
        storage = config.fresh("xmit-sdk")
        manifest = config.fresh("xmit-sdk-manifest.json")
        manifest.write_text(json.dumps({"asset": [{"local": m.source, "server": "/" + m.destination} for m in moves]}))
        argv = [*_spec(storage).argv()]
        argv[argv.index("-L") + 1] = str(manifest)
        command = "echo y|" + " ".join(shlex.quote(part) for part in argv)
        env = dict(os.environ, FAKE_FOX_STORAGE=str(storage), LD_LIBRARY_PATH=str(FAKE_EXE.parent))
        seconds = timed(lambda: subprocess.run(command, shell=True, env=env, check=True, capture_output=True))
        _check(storage, count)
        return seconds

    def ours(_: int) -> float:
        storage = config.fresh("xmit-ours")

        def leg() -> None:
            summary = run_transmitter_leg(
                moves, direction="upload", spec=lambda t, local, remote, speed: _with(storage, t, local, remote),
                work_dir=config.fresh("xmit-work"), destination_root=None, sizes={}, report=lambda event: None,
                control=Control(), options=TransferOptions(),
            )  # fmt: skip
            if summary.files_ok != count:
                raise RuntimeError(f"the leg did not send every file: {summary}")

        seconds = timed(leg)
        _check(storage, count)
        return seconds

    series = interleaved(config.rounds, [("ours", ours), ("sdk", sdk_way)])
    ours_s, sdk_s = series["ours"].median, series["sdk"].median
    row.ours, row.baseline = f"{ours_s:.2f} s", f"{sdk_s:.2f} s (the SDK's shell command, exit code only)"
    row.ratio = ours_s / sdk_s
    row.ratio_text = f"{row.ratio:.2f}x the SDK's way"
    row.met = row.ratio <= 1.3
    row.notes += [
        f"{count:,} files of 64 KiB, warm; rounds {', '.join(f'{s:.2f}' for s in series['ours'].runs)} s (ours) vs "
        f"{', '.join(f'{s:.2f}' for s in series['sdk'].runs)} s (SDK's way)",
        "ours also: a 0600 manifest, progress events from every output line, an xxh3-128 checksum of each file done",
    ]
    return row


def _with(storage: Path, transmit_type: TransmitType, local: str, remote: str) -> TransmitSpec:
    return dataclasses.replace(_spec(storage), transmit_type=transmit_type, local=local, remote=remote)


def _check(storage: Path, count: int) -> None:
    arrived = sum(1 for p in (storage / "input" / f"{STORAGE}-{USER}").rglob("*") if p.is_file())
    if arrived != count:
        raise RuntimeError(f"{arrived} of {count} files arrived in {storage}")
