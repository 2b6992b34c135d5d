"""`python -m tests.bench [--quick] [--only 1,3] [--rounds N] [--keep]`: run the benchmarks, print the table.

Exits 0 whatever the figures (a missed goal never fails the build); non-zero only when a benchmark
itself crashed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from tests.bench import (
    audit,
    copying,
    dashboard,
    downloading,
    job_pages,
    manifest_browse,
    reupload,
    s3,
    scale,
    sdk,
    sftp,
    transmitter,
    worker_upload,
    workers,
)
from tests.bench.common import Config, Row, log, print_table, python_version, remove_in_background

NAMES = {
    1: "one big file vs cp + sync",
    2: "many small files vs cp -r + sync",
    3: "re-upload of unchanged files vs a stat walk",
    4: "cutting_upload vs the SDK's",
    5: "append_to_upload vs the SDK's",
    6: "a 1.34M-entry manifest: import, job start, requests during the run, worker memory",
    7: "download latency: frame finished -> arrived locally, event and polling modes",
    8: "one big download vs cp + sync",
    9: "the dashboard: 200 websocket clients while 20 jobs run (latency, daphne CPU)",
    10: "job page and per-file table, a job of 500,000 items (SQLite, or DATABASE_URL)",
    11: "transfers list, 10,000 jobs (SQLite, or DATABASE_URL)",
    12: "audit page and CSV export, 1,000,000 rows (SQLite, or DATABASE_URL)",
    13: "browsing a 500,000-entry manifest: pages and filters (SQLite, or DATABASE_URL)",
    14: "an upload through the vendor's transmitter (the fake): rvweb's leg vs the SDK's shell command",
    15: "many small files through a real Celery worker, with the database bookkeeping",
    16: "SFTP: one big file through run_transfer vs scp (aes128-gcm, loopback)",
    17: "SFTP: 2,000 x 1 MiB files through run_transfer vs sftp -b put -r",
    18: "SFTP: one big file at 100 ms round trip and a per-connection rate cap vs scp (fault proxy)",
    19: "S3: one big file uploaded through run_transfer vs rclone copy (rclone serve s3)",
    20: "S3: one big file downloaded through run_transfer vs rclone copy (rclone serve s3)",
    21: "small files on 1, 2 and 4 worker processes: the scaling",
    22: "8 jobs at once under one shared studio budget: how closely it holds",
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="scaled-down sizes and fewer rounds: a smoke test")
    parser.add_argument("--only", default=",".join(map(str, NAMES)), help="comma-separated benchmark numbers (default: all)")
    parser.add_argument("--rounds", type=int, help="timed rounds per side (default 5, or 3 with --quick)")
    parser.add_argument("--settle", type=float, help="seconds to wait after dropping caches (default 3, 0.5 with --quick)")
    parser.add_argument("--dir", default="/var/tmp", help="where the fresh scratch folder goes (default /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder instead of deleting it")
    args = parser.parse_args(argv)
    args.only = sorted({int(part) for part in args.only.split(",") if part.strip()})
    if not set(args.only) <= set(NAMES):
        parser.error(f"--only takes numbers among {sorted(NAMES)}")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(args.dir).resolve() / f"rvweb-bench-{stamp}-{os.getpid()}"
    root.mkdir(parents=True)
    config = Config(
        quick=args.quick,
        root=root,
        rounds=args.rounds or (3 if args.quick else 5),
        settle=args.settle if args.settle is not None else (0.5 if args.quick else 3.0),
    )
    size = "quick (scaled-down)" if args.quick else "full size"
    print(f"rvweb benchmarks, {size}: Python {python_version()}, {os.cpu_count()} CPUs, scratch folder {root}", flush=True)
    if os.geteuid() != 0:
        config.can_drop = False
        print("not root: caches cannot be dropped, so the 'cold' runs are warm", flush=True)
    rows: list[Row] = []
    started = time.monotonic()
    try:
        tree: tuple[Path, list[Path]] | None = None

        def the_tree() -> tuple[Path, list[Path]]:
            nonlocal tree
            if tree is None:
                tree = reupload.make_tree(config, 10_000 if config.quick else 100_000)
            return tree

        if {4, 5} & set(args.only):
            sdk.install_sdk(config)
        benchmarks: dict[int, Callable[[], Row | list[Row]]] = {
            1: lambda: copying.big_file(config),
            2: lambda: copying.small_files(config),
            3: lambda: reupload.reupload(config, *the_tree()),
            4: lambda: sdk.cutting(config),
            5: lambda: sdk.appending(config, the_tree()[0]),
            6: lambda: scale.scale(config),
            7: lambda: downloading.latency(config),
            8: lambda: downloading.big_download(config),
            9: lambda: dashboard.dashboard(config),
            10: lambda: job_pages.job_page(config),
            11: lambda: job_pages.transfers_list(config),
            12: lambda: audit.bench(config),
            13: lambda: manifest_browse.bench(config),
            14: lambda: transmitter.bench(config),
            15: lambda: worker_upload.bench(config),
            16: lambda: sftp.big_upload(config),
            17: lambda: sftp.many_files(config),
            18: lambda: sftp.far_upload(config),
            19: lambda: s3.upload(config),
            20: lambda: s3.download(config),
            21: lambda: workers.scaling(config),
            22: lambda: workers.budget_precision(config),
        }
        for number in args.only:
            print(f"\n[{number}] {NAMES[number]}", flush=True)
            began = time.monotonic()
            try:
                result = benchmarks[number]()
                rows.extend(result if isinstance(result, list) else [result])
            except Exception:
                traceback.print_exc()
                rows.append(Row(number, NAMES[number], crashed=True, notes=["crashed: see the traceback above"]))
            log(f"took {time.monotonic() - began:.0f} s")
    finally:
        if args.keep:
            print(f"\nkept the scratch folder {root}")
        else:
            pid = remove_in_background(root)
            print(f"\ndeleting the scratch folder {root} in the background (rm pid {pid})")
    minutes = (time.monotonic() - started) / 60
    print(f"\nrvweb benchmarks ({size}, {minutes:.1f} min; medians of interleaved runs; ratios from the same run)\n")
    print_table(rows)
    if config.sdk_versions:
        print(f"\nSDK baseline: {config.sdk_versions}, installed from the package registry into a throwaway venv")
    missed = [r for r in rows if r.met is False]
    crashed = [r for r in rows if r.crashed]
    print(
        f"\ngoals met: {sum(1 for r in rows if r.met)}/{len(rows)}"
        + (f"; missed: {', '.join(str(r.number) for r in missed)}" if missed else "")
    )
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
