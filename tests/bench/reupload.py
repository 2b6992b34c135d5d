"""Benchmark 3: re-uploading unchanged files (all skipped through the ledger) vs an os.walk + os.stat of them.

The ledger is the app's own DbLedger on a throwaway SQLite database (Django set up against a data dir
inside the scratch folder, migrated); MemoryLedger only if that cannot be set up, and the output says so.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

from tests.bench.common import Config, Row, Series, drop_caches, interleaved, log, timed, write_tree
from transfers.engine.ledger import Ledger, MemoryLedger
from transfers.engine.runner import FileTask, RunSummary, run_upload
from transfers.engine.storage import LocalStorage
from transfers.engine.tracker import Tracker


def database_ledger(config: Config) -> tuple[Ledger, str]:
    """The app's DbLedger on a fresh SQLite file, or a MemoryLedger (and why) when Django cannot be set up."""
    data = config.root / "django"
    try:
        os.environ["DJANGO_SETTINGS_MODULE"] = "rvweb.settings"
        os.environ["RVWEB_DATA_DIR"] = str(data)
        os.environ["DATABASE_URL"] = f"sqlite:///{data / 'bench.sqlite3'}"  # never a real database
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        from transfers.ledger import DbLedger
        from transfers.models import FarmAccount, Team

        account = FarmAccount.objects.create(name="bench", team=Team.objects.create(name="bench"))
        return DbLedger(account_id=account.pk, area="input"), f"DbLedger (the app's, SQLite at {data / 'bench.sqlite3'})"
    except Exception as exc:
        traceback.print_exc()
        return MemoryLedger(), f"MemoryLedger (Django could not be set up: {type(exc).__name__}: {exc})"


def stat_walk(root: Path) -> int:
    """The baseline: every file's size and mtime, the least a skip decision needs."""
    seen = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            os.stat(os.path.join(folder, name))
            seen += 1
    return seen


def reupload(config: Config, tree: Path, paths: list[Path]) -> Row:
    count = len(paths)
    row = Row(3, f"re-upload {count:,} unchanged files", goal="<= 2x stat walk")
    ledger, which = database_ledger(config)
    log(f"ledger: {which}")
    tasks = [FileTask(i, str(path), f"assets/{path.parent.name}/{path.name}") for i, path in enumerate(paths, start=1)]
    storage_root = config.fresh("reupload-storage")
    total = sum(p.stat().st_size for p in paths)

    def run() -> RunSummary:
        storage = LocalStorage(storage_root)
        return run_upload(
            tasks,
            storage=storage,
            allowed_roots=[config.root],
            report=Tracker(files_total=count, bytes_total=total),
            ledger=ledger,
        )

    log(f"first upload of {count:,} files (fills the storage and the ledger)")
    first: list[RunSummary] = []
    first_seconds = timed(lambda: first.append(run()))
    if first[0].files_ok != count or first[0].files_skipped:
        raise RuntimeError(f"first upload did not send every file: {first[0]}")
    os.sync()

    def ours(_: int) -> float:
        result: list[RunSummary] = []
        seconds = timed(lambda: result.append(run()))
        if result[0].files_skipped != count:
            raise RuntimeError(f"the re-upload sent files again: {result[0]}")
        return seconds

    def walk(_: int) -> float:
        found: list[int] = []
        seconds = timed(lambda: found.append(stat_walk(tree)))
        if found[0] != count:
            raise RuntimeError(f"the walk saw {found[0]} files, not {count}")
        return seconds

    series = interleaved(config.rounds, [("ours", ours), ("walk+stat", walk)], warmup=False)  # the first upload warmed up
    ratio = series["ours"].median / series["walk+stat"].median
    row.ours = f"{series['ours'].median:.2f} s ({count / series['ours'].median:,.0f} files/s)"
    row.baseline = f"{series['walk+stat'].median:.2f} s (os.walk+os.stat)"
    row.ratio, row.ratio_text, row.met = ratio, f"{ratio:.2f}x the walk's time", ratio <= 2.0
    row.notes += [
        f"ledger: {which}; warm caches (right after the first upload); every file skipped (size and mtime match)",
        f"first upload (not compared): {first_seconds:.1f} s, {count / first_seconds:,.0f} files/s",
        f"ours: {series['ours'].describe()}",
        f"walk: {series['walk+stat'].describe()}",
    ]
    if config.can_drop:
        cold = {"ours": Series(), "walk+stat": Series()}
        for number in range(max(2, config.rounds // 2)):
            for name, side in [("ours", ours), ("walk+stat", walk)] if number % 2 == 0 else [("walk+stat", walk), ("ours", ours)]:
                drop_caches(config)
                cold[name].runs.append(side(number))
                log(f"cold round {number + 1}: {name} {cold[name].runs[-1]:.3f} s")
        cold_ratio = cold["ours"].median / cold["walk+stat"].median
        row.notes += [
            f"cold (caches dropped; not the goal's figure): ours {cold['ours'].median:.2f} s"
            f" vs walk {cold['walk+stat'].median:.2f} s = {cold_ratio:.2f}x",
            f"cold ours: {cold['ours'].describe()}",
            f"cold walk: {cold['walk+stat'].describe()}",
        ]
    return row


def make_tree(config: Config, count: int) -> tuple[Path, list[Path]]:
    tree = config.root / "tree"
    log(f"writing {count:,} files of 64 bytes under {tree}")
    paths = write_tree(tree, count, 64, suffix=".exr")
    drop_caches(config)
    return tree, paths
