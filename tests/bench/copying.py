"""Benchmarks 1 and 2: sending with run_upload into a LocalStorage (verified, renamed, synced) vs `cp` + sync.

Both sides start cold (caches dropped) and write into a destination name never used before; ours ends
with storage.sync() (one syncfs), cp's with `sync`, so both figures are for data on disk.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.bench.common import MB, Config, Row, drop_caches, interleaved, log, run_shell, timed, write_random_file, write_tree
from transfers.engine.runner import FileTask, RunSummary, run_upload
from transfers.engine.storage import LocalStorage
from transfers.engine.tracker import Tracker

# Cold medians on this kind of machine (shared/reference/env-baselines.md section 1), to tell a slow disk from a slow engine.
REFERENCE_CP_MBS = 1043
REFERENCE_CP_R_FILES = 6659


def _reference(measured: float, reference: float, unit: str) -> list[str]:
    if 0.6 * reference <= measured <= 1.6 * reference:
        return []
    return [
        f"note: the baseline ran at {measured:,.0f} {unit} where the reference machine measured {reference:,.0f} {unit} (cold):"
        " the disk is not what it was then; the ratio still holds, both sides ran interleaved on the same disk"
    ]


def upload(tasks: list[FileTask], destination: Path, allowed: Path, total_bytes: int) -> RunSummary:
    """One run as the worker does it: a Tracker for progress, default options, then a sync of the storage."""
    storage = LocalStorage(destination)
    tracker = Tracker(files_total=len(tasks), bytes_total=total_bytes)
    summary = run_upload(tasks, storage=storage, allowed_roots=[allowed], report=tracker)
    storage.sync()
    if summary.files_ok != len(tasks) or summary.files_skipped:
        raise RuntimeError(f"the engine did not send every file: {summary}")
    return summary


def big_file(config: Config) -> Row:
    size = (256 << 20) if config.quick else (2 << 30)
    row = Row(1, f"one {size >> 20} MiB file, cold", goal=">= 0.9x cp")
    source = config.root / "big" / "source.bin"
    log(f"writing {size >> 20} MiB of random bytes to {source}")
    write_random_file(source, size)
    made: list[Path] = []

    def ours(_: int) -> float:
        destination = config.fresh("big-ours")
        made.append(destination)
        drop_caches(config)
        tasks = [FileTask(1, str(source), "shots/source.bin")]
        seconds = timed(lambda: upload(tasks, destination, config.root, size))
        final = destination / "shots" / "source.bin"
        if final.stat().st_size != size:
            raise RuntimeError(f"{final} has the wrong size")
        return seconds

    def cp(_: int) -> float:
        destination = config.fresh("big-cp")
        destination.mkdir()
        made.append(destination)
        drop_caches(config)
        return timed(lambda: run_shell(f"cp {shlex.quote(str(source))} {shlex.quote(str(destination / 'source.bin'))} && sync"))

    series = interleaved(config.rounds, [("ours", ours), ("cp+sync", cp)])
    for folder in made:  # big files delete fast; frees the disk for the next benchmarks
        for path in folder.rglob("*"):
            if path.is_file():
                path.unlink()
    ours_rate, cp_rate = size / MB / series["ours"].median, size / MB / series["cp+sync"].median
    row.ours, row.baseline = f"{ours_rate:,.0f} MB/s", f"{cp_rate:,.0f} MB/s (cp+sync)"
    row.ratio = ours_rate / cp_rate
    row.ratio_text = f"{row.ratio:.2f}x cp"
    row.met = row.ratio >= 0.9
    cold = "cold (caches dropped before each run)" if config.can_drop else "WARM (could not drop caches)"
    row.notes += [
        f"{cold}; run_upload (4 ranges in parallel, xxh3-128 while sending, verified, fsync, rename) + syncfs",
        f"ours: {series['ours'].describe()}",
        f"cp:   {series['cp+sync'].describe()}",
        *_reference(cp_rate, REFERENCE_CP_MBS, "MB/s"),
    ]
    return row


def small_files(config: Config) -> Row:
    count = 2_000 if config.quick else 20_000
    row = Row(2, f"{count:,} x 4 KiB files, cold", goal=">= 0.5x cp -r")
    source = config.root / "small-source"
    log(f"writing {count:,} files of 4 KiB under {source}")
    paths = write_tree(source, count, 4096)
    tasks = [FileTask(i, str(path), f"small/{path.parent.name}/{path.name}") for i, path in enumerate(paths, start=1)]

    def ours(_: int) -> float:
        destination = config.fresh("small-ours")
        drop_caches(config)
        return timed(lambda: upload(tasks, destination, config.root, count * 4096))

    def cp(_: int) -> float:
        destination = config.fresh("small-cp")
        drop_caches(config)
        return timed(lambda: run_shell(f"cp -r {shlex.quote(str(source))} {shlex.quote(str(destination))} && sync"))

    series = interleaved(min(config.rounds, 3), [("ours", ours), ("cp -r+sync", cp)])  # ours takes long: fewer rounds
    ours_rate, cp_rate = count / series["ours"].median, count / series["cp -r+sync"].median
    row.ours, row.baseline = f"{ours_rate:,.0f} files/s", f"{cp_rate:,.0f} files/s (cp -r+sync)"
    row.ratio = ours_rate / cp_rate
    row.ratio_text = f"{row.ratio:.2f}x cp -r"
    row.met = row.ratio >= 0.5
    cold = "cold (caches dropped before each run)" if config.can_drop else "WARM (could not drop caches)"
    row.notes += [
        f"{cold}; run_upload, pool_size 4, every file hashed, verified and renamed, then one syncfs; fresh folders",
        f"ours: {series['ours'].describe()}",
        f"cp:   {series['cp -r+sync'].describe()}",
        *_reference(cp_rate, REFERENCE_CP_R_FILES, "files/s"),
    ]
    return row
