"""What every benchmark shares: the scratch folder, cold caches, timing, medians and the result table.

This machine's pitfalls (shared/reference/env-baselines.md section 0) shape it: page-cache timings are
bimodal, so cold runs drop the caches and settle first, A and B are interleaved in one run (order
alternating each round) and medians are reported; deleting a big tree and recreating it is slow on this
ext4, so every run writes into a fresh folder name and the trees are deleted only at the very end.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MB = 1_000_000  # MB/s = 10^6 bytes/s, as in env-baselines.md


def log(message: str) -> None:
    print(f"  {message}", flush=True)


@dataclass
class Config:
    quick: bool
    root: Path  # the fresh scratch folder of this run
    rounds: int
    settle: float  # seconds to sleep after dropping caches
    can_drop: bool = True
    sdk_python: Path | None = None  # the throwaway venv's interpreter, once installed
    sdk_versions: str = ""
    sdk_problem: str = ""
    _counter: int = 0

    def fresh(self, name: str) -> Path:
        """A path under the scratch folder that has never existed in this run."""
        self._counter += 1
        return self.root / f"{name}-{self._counter:03d}"


def drop_caches(config: Config) -> None:
    """Flush dirty pages and empty the page, dentry and inode caches, then let the machine settle."""
    os.sync()
    if config.can_drop:
        try:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        except OSError as exc:
            config.can_drop = False
            log(f"cannot drop caches ({exc.strerror}): runs are warm, not cold; run as root for cold figures")
    time.sleep(config.settle)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run_shell(command: str) -> None:
    subprocess.run(["sh", "-c", command], check=True)


@dataclass
class Series:
    """Seconds of the timed runs of one side."""

    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def spread(self) -> float:
        return (max(self.runs) - min(self.runs)) / self.median if self.median else 0.0

    def describe(self) -> str:
        runs = ", ".join(f"{r:.2f}" for r in self.runs)
        return f"median {self.median:.3f} s of {len(self.runs)} (runs {runs} s; spread {self.spread:.0%})"


def interleaved(rounds: int, sides: Sequence[tuple[str, Callable[[int], float]]], *, warmup: bool = True) -> dict[str, Series]:
    """Run each side once per round, alternating their order (ABBA...), after one untimed warm-up round.

    Each side is called with a round number (-1 for the warm-up) and returns the seconds it measured.
    """
    series = {name: Series() for name, _ in sides}
    plan = [-1] if warmup else []
    for number in [*plan, *range(rounds)]:
        order = list(sides) if number % 2 == 0 else list(reversed(sides))
        for name, side in order:
            seconds = side(number)
            if number >= 0:
                series[name].runs.append(seconds)
            log(f"{'warm-up' if number < 0 else f'round {number + 1}'}: {name} {seconds:.3f} s")
    return series


@dataclass
class Row:
    number: int
    name: str
    ours: str = ""
    baseline: str = ""
    ratio: float | None = None
    ratio_text: str = ""
    goal: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    crashed: bool = False


def print_table(rows: Sequence[Row], out: Callable[[str], None] = print) -> None:
    header = ["#", "benchmark", "ours", "baseline", "ratio", "goal", "met"]
    body = [
        [
            str(r.number),
            r.name,
            r.ours,
            r.baseline,
            r.ratio_text,
            r.goal,
            "CRASHED" if r.crashed else ("-" if r.met is None else ("yes" if r.met else "NO")),
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()

    out(fmt(header))
    out("-+-".join("-" * width for width in widths))
    for line in body:
        out(fmt(line))
    out("")
    for r in rows:
        for note in r.notes:
            out(f"[{r.number}] {note}")


def write_tree(root: Path, files: int, size: int, *, per_folder: int = 1000, suffix: str = ".bin") -> list[Path]:
    """`files` files of `size` distinct bytes each, in folders of `per_folder`; returns them in order."""
    paths = []
    pad = os.urandom(max(0, size - 16))
    for index in range(files):
        folder = root / f"d{index // per_folder:03d}"
        if index % per_folder == 0:
            folder.mkdir(parents=True)
        path = folder / f"f{index:06d}{suffix}"
        with open(path, "wb") as handle:
            handle.write((index.to_bytes(16, "little") + pad)[:size])
        paths.append(path)
    return paths


def write_random_file(path: Path, size: int, *, block: int = 16 << 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            count = min(block, remaining)
            handle.write(os.urandom(count))
            remaining -= count
        handle.flush()
        os.fsync(handle.fileno())


def remove_in_background(path: Path) -> int:
    """Delete a (big) tree without waiting: deleting 100k+ files here takes a while."""
    process = subprocess.Popen(
        ["rm", "-rf", "--one-file-system", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return process.pid


def python_version() -> str:
    return sys.version.split()[0]


def run_module(config: Config, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A benchmark that sets Django up on a database of its own, run as `python -m module args` in a
    process of its own with a fresh data dir (SQLite there unless DATABASE_URL is set); its output printed."""
    data_dir = config.fresh(module.rsplit(".", 1)[-1])
    data_dir.mkdir(parents=True)
    env = dict(os.environ, RVWEB_DATA_DIR=str(data_dir))
    env.setdefault("DATABASE_URL", f"sqlite:///{data_dir}/bench.sqlite3")
    done = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True)
    print(done.stdout + done.stderr[-2000:], flush=True)
    return done
