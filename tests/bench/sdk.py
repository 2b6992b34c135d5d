"""Benchmarks 4 and 5: our cutting_upload and append_to_upload vs the Renderbus SDK's own functions.

The SDK (rayvision-sync 3.1.8 and the rayvision-api it pulls) is installed from the package registry into
a throwaway venv inside the scratch folder. Its functions run in a subprocess of that venv and are timed
inside it, so neither side pays for interpreter start-up or imports.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

from tests.bench.common import Config, Row, Series, log, timed
from transfers.engine import sdk

SDK_SYNC = "rayvision-sync==3.1.8"
CHILD = Path(__file__).with_name("sdk_child.py")


def install_sdk(config: Config) -> None:
    """python -m venv + pip install; a module the SDK imports but does not declare is installed too."""
    venv = config.root / "sdk-venv"
    log(f"installing {SDK_SYNC} into a throwaway venv at {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    wanted = [SDK_SYNC]
    for _ in range(4):
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted],
            capture_output=True,
            text=True,
        )
        if pip.returncode:
            tail = " ".join(line for line in pip.stderr.splitlines() if "ignored" not in line)[-300:]
            config.sdk_problem = f"pip install {' '.join(wanted)} failed: {tail}"
            return
        check = subprocess.run([str(python), str(CHILD), "versions"], capture_output=True, text=True)
        if check.returncode == 0:
            versions = json.loads(check.stdout)
            config.sdk_python = python
            config.sdk_versions = ", ".join(f"{name} {version}" for name, version in versions.items())
            log(f"SDK ready: {config.sdk_versions}")
            return
        missing = re.search(r"No module named '([\w.]+)'", check.stderr)
        if not missing:
            config.sdk_problem = f"the SDK does not import: {check.stderr.strip()[-300:]}"
            return
        wanted = [missing.group(1).split(".")[0]]
        log(f"the SDK needs {wanted[0]}, which it does not declare: installing it")
    config.sdk_problem = "the SDK still does not import after installing its undeclared dependencies"


def call_sdk(config: Config, command: str, spec: dict[str, Any]) -> dict[str, Any]:
    assert config.sdk_python is not None
    done = subprocess.run([str(config.sdk_python), str(CHILD), command, json.dumps(spec)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the SDK's {command} failed: {done.stderr.strip()[-1000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _sdk_missing(row: Row, config: Config) -> Row:
    row.ours = row.baseline = "not measured"
    row.notes.append(f"the SDK is not available, so there is nothing to compare with: {config.sdk_problem}")
    return row


# --- 4. cutting_upload ----------------------------------------------------------------------------


def write_manifest(path: Path, count: int) -> None:
    """An analyzer-like upload.json (indented, as the SDK writes them) of `count` distinct Windows paths."""
    entries = []
    for index in range(count):
        local = f"D:/projects/film/seq{index // 20000:03d}/sh{index // 500:04d}/textures/tex_{index:06d}.exr"
        entries.append({"local": local, "server": "/" + local.replace(":", "")})
    path.write_bytes(msgspec.json.format(msgspec.json.encode({"asset": entries}), indent=2))


def _assets(path: str) -> list[Any]:
    with open(path, "rb") as handle:
        document = json.load(handle)
    assets: list[Any] = document["asset"]
    return assets


def compare_chunks(ours: list[str], theirs: list[str]) -> str:
    """The same entries chunk by chunk, except the SDK's empty trailing chunk; raises when they differ."""
    extra = theirs[len(ours) :]
    if len(theirs) < len(ours) or any(_assets(path) for path in extra):
        raise RuntimeError(f"chunk counts differ beyond the SDK's empty trailing one: ours {len(ours)}, SDK {len(theirs)}")
    for number, (mine, sdks) in enumerate(zip(ours, theirs, strict=False), start=1):
        if _assets(mine) != _assets(sdks):
            raise RuntimeError(f"chunk {number} differs between ours ({mine}) and the SDK's ({sdks})")
    trailing = f" + the SDK's {len(extra)} empty trailing chunk(s)" if extra else ""
    return f"same entries in all {len(ours)} chunks{trailing}"


def cutting(config: Config) -> Row:
    count = 50_000 if config.quick else 500_000
    size = count // 50
    row = Row(4, f"cutting_upload {count:,} entries", goal=">= 10x faster")
    if config.sdk_python is None:
        return _sdk_missing(row, config)
    manifest = config.root / "cut" / "upload.json"
    manifest.parent.mkdir()
    write_manifest(manifest, count)
    log(f"upload.json of {count:,} entries, {manifest.stat().st_size / 1e6:.0f} MB, cut into chunks of {size:,}")
    series = {"ours": Series(), "SDK": Series()}
    outputs: dict[str, list[str]] = {}

    def ours() -> float:
        target = config.fresh("cut-ours")
        target.mkdir()
        paths: list[str] = []
        seconds = timed(lambda: paths.extend(sdk.cutting_upload(manifest, size, target)))
        outputs.setdefault("ours", paths)
        return seconds

    def theirs() -> float:
        target = config.fresh("cut-sdk")
        target.mkdir()  # the SDK writes next to the original when the target folder does not exist
        result = call_sdk(config, "cut", {"upload": str(manifest), "size": size, "target": str(target)})
        outputs.setdefault("SDK", result["paths"])
        return float(result["seconds"])

    ours()  # warm-up: the manifest into the page cache, msgspec's decoders built
    rounds = min(config.rounds, 3)
    for number in range(rounds):
        for name, side in [("ours", ours), ("SDK", theirs)] if number % 2 == 0 else [("SDK", theirs), ("ours", ours)]:
            series[name].runs.append(side())
            log(f"round {number + 1}: {name} {series[name].runs[-1]:.3f} s")
    check = compare_chunks(outputs["ours"], outputs["SDK"])
    log(check)
    speedup = series["SDK"].median / series["ours"].median
    row.ours, row.baseline = (
        f"{series['ours'].median:.2f} s",
        f"{series['SDK'].median:.2f} s ({config.sdk_versions.split(',')[0]})",
    )
    row.ratio, row.ratio_text, row.met = speedup, f"{speedup:.1f}x faster", speedup >= 10
    row.notes += [
        f"chunks of {size:,}; {check}",
        f"ours: {series['ours'].describe()}",
        f"SDK:  {series['SDK'].describe()} (timed inside its venv's process)",
    ]
    return row


# --- 5. append_to_upload --------------------------------------------------------------------------


def _empty_manifest(config: Config, name: str) -> Path:
    path = config.fresh(name).with_suffix(".json")
    path.write_text('{"asset": []}\n')
    return path


def fit_quadratic(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares T(n) = a*n + b*n^2 (no constant: nothing to do costs nothing)."""
    s2 = sum(n**2 for n, _ in points)
    s3 = sum(n**3 for n, _ in points)
    s4 = sum(n**4 for n, _ in points)
    t1 = sum(n * t for n, t in points)
    t2 = sum(n**2 * t for n, t in points)
    det = s2 * s4 - s3 * s3
    return (t1 * s4 - t2 * s3) / det, (s2 * t2 - s3 * t1) / det


def appending(config: Config, tree: Path) -> Row:
    folders = sorted(str(p) for p in tree.iterdir() if p.is_dir())
    per_folder = len(list(Path(folders[0]).iterdir()))
    count = sum(len(list(Path(f).iterdir())) for f in folders)
    row = Row(5, f"append_to_upload {count:,}-file tree", goal=">= 5x faster")
    if config.sdk_python is None:
        return _sdk_missing(row, config)
    # Seconds the SDK may take at full size; past that it runs at the size it can finish in `budget_part`.
    budget_full, budget_part = (30.0, 20.0) if config.quick else (180.0, 120.0)

    def ours_once() -> float:
        upload = _empty_manifest(config, "append-ours")
        added: list[int] = []
        seconds = timed(lambda: added.append(sdk.append_to_upload([str(tree)], upload)))
        if added[0] != count:
            raise RuntimeError(f"our append_to_upload added {added[0]} entries, not {count}")
        return seconds

    def sdk_at(folder_count: int) -> tuple[int, float, Path]:
        upload = _empty_manifest(config, "append-sdk")
        paths = [str(tree)] if folder_count == len(folders) else folders[:folder_count]
        seconds = float(call_sdk(config, "append", {"upload": str(upload), "paths": paths})["seconds"])
        size = folder_count * per_folder if folder_count < len(folders) else count
        log(f"SDK at {size:,} files: {seconds:.2f} s")
        return size, seconds, upload

    ours_series = Series()
    ours_once()  # warm-up
    ours_series.runs += [ours_once(), ours_once()]
    # The SDK dedupes by scanning the whole asset list for every new file (O(n^2)): measure it at 1/8
    # and 1/4 of the tree, fit a*n + b*n^2, and run it at full size only when that fits the budget;
    # else at the largest size that fits `budget_part`, and extrapolate with a fit through all three.
    small_n, small_t, small_upload = sdk_at(max(1, len(folders) // 8))
    points = [(small_n, small_t), sdk_at(max(2, len(folders) // 4))[:2]]
    a, b = fit_quadratic(points)
    predicted = a * count + b * count**2
    if predicted <= budget_full:
        full = sdk_at(len(folders))
        points.append(full[:2])
        sdk_seconds, method = full[1], f"measured at the full {count:,} files (predicted {predicted:.0f} s from the smaller runs)"
    else:
        fitting = (k for k in range(1, len(folders)) if a * k * per_folder + b * (k * per_folder) ** 2 <= budget_part)
        fits = max(fitting, default=1)
        points.append(sdk_at(fits)[:2])
        a, b = fit_quadratic(points)
        sdk_seconds = a * count + b * count**2
        method = (
            f"EXTRAPOLATED (predicted {predicted:.0f} s at full size, over the {budget_full:.0f} s budget):"
            f" least-squares fit T = a*n + b*n^2 through the measured points (a = {a:.3g} s, b = {b:.3g} s), at n = {count:,}"
        )
    ours_series.runs += [ours_once(), ours_once(), ours_once()]
    log(f"ours: {ours_series.describe()}")
    # Same files as the SDK found? (its server paths differ by design: it drops a POSIX path's leading '/')
    check_upload = _empty_manifest(config, "append-check")
    sdk.append_to_upload(folders[: max(1, len(folders) // 8)], check_upload)
    same = {e["local"] for e in _assets(str(check_upload))} == {e["local"] for e in _assets(str(small_upload))}
    if not same:
        raise RuntimeError("our append_to_upload and the SDK's found different files")
    speedup = sdk_seconds / ours_series.median
    row.ours = f"{ours_series.median:.2f} s"
    how = "extrapolated" if method.startswith("EXTRA") else "measured"
    row.baseline = f"{sdk_seconds:.1f} s {how} ({config.sdk_versions.split(', ')[-1]})"
    row.ratio, row.ratio_text, row.met = speedup, f"{speedup:.0f}x faster", speedup >= 5
    row.notes += [
        f"SDK: {method}",
        f"SDK measured (files, s): {', '.join(f'({n:,}, {t:.2f})' for n, t in points)} (timed inside its venv's process)",
        f"ours: {ours_series.describe()}, folder walked into an empty upload.json",
        f"same local paths as the SDK's at {small_n:,} files: {same}",
    ]
    return row
