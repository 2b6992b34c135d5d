"""The SDK's manifest functions, with its names and meaning and without its bugs (sdk-spec §3.4, §3.5, §8).

* cutting_upload writes no empty trailing chunk, keeps the other top-level keys, creates the target
  folder, removes stale chunks of an earlier cut of the same file (never another's), and refuses a
  chunk size below 1. It checks the file's shape, not its paths: import checks those, chunk by chunk.
* append_to_upload walks folders (also when given as a single string), dedupes in O(1), keeps the
  other keys, and refuses a malformed upload.json instead of silently emptying it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from transfers.engine.manifest import (
    EntryProblem,
    ManifestEntry,
    ManifestInvalid,
    encode_upload_json,
    is_text,
    load_upload_json,
    write_atomic,
    write_upload_json,
)
from transfers.engine.paths import PathRefused, clean_server_path, local_to_server, normalize_local


def cutting_upload(
    upload_path: str | os.PathLike[str],
    max_resources_number: int | None = None,
    after_cutting_position: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Cut upload.json into `upload_1.json … upload_N.json` of at most `max_resources_number` entries.

    Returns the absolute paths of the chunks; or `[upload_path]` itself when no cut is needed
    (no size given, or the manifest is not larger than it), as the SDK does.
    """
    source = Path(upload_path).absolute()
    if not source.is_file():
        raise FileNotFoundError(f"upload.json not found: {source}")
    if max_resources_number is not None and (not isinstance(max_resources_number, int) or max_resources_number < 1):
        raise ValueError(f"max_resources_number must be a whole number of at least 1, got {max_resources_number!r}")
    # Shape and types are checked (UTF-8, JSON, an "asset" list of {local, server} strings); the paths
    # are not: cutting splits, it does not judge, and every chunk is checked in full when imported.
    document = load_upload_json(source, validate=False)
    count = len(document.entries)
    if max_resources_number is None or count <= max_resources_number:
        return [str(source)]
    target = Path(after_cutting_position).absolute() if after_cutting_position else source.parent
    target.mkdir(parents=True, exist_ok=True)
    names = [f"upload_{number}.json" for number in range(1, -(-count // max_resources_number) + 1)]
    cuts = _read_cuts(target)
    for name in names:
        if target / name == source:
            raise ValueError(f"cutting {source} into its own folder would overwrite it; give after_cutting_position")
        owner = next((other for other, chunks in cuts.items() if name in chunks and other != str(source)), None)
        if owner is not None:
            raise FileExistsError(f"{target / name} holds a chunk of {owner}; give another after_cutting_position")
    for name, start in zip(names, range(0, count, max_resources_number), strict=True):
        write_atomic(target / name, encode_upload_json(document.entries[start : start + max_resources_number], document.extra))
    for stale in set(cuts.get(str(source), [])) - set(names):  # chunks of an earlier, larger cut of this file
        (target / stale).unlink(missing_ok=True)
    cuts[str(source)] = names
    write_atomic(target / _CUTS, json.dumps(cuts, indent=1).encode())
    return [str(target / name) for name in names]


_CUTS = ".rvweb-cuts.json"  # which upload.json each chunk in this folder was cut from


def _read_cuts(folder: Path) -> dict[str, list[str]]:
    try:
        recorded = json.loads((folder / _CUTS).read_bytes())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _walk(path: str) -> Iterator[str]:
    """Files under `path` (itself when it is a file), in a stable order, with `/` separators."""
    if os.path.isfile(path):
        yield path.replace("\\", "/")
        return
    if not os.path.isdir(path):
        raise FileNotFoundError(f"path to append does not exist: {path}")
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        base = folder.replace("\\", "/").rstrip("/")
        for name in sorted(files):
            yield f"{base}/{name}"


def append_to_upload(files_paths: str | list[str] | tuple[str, ...], upload_path: str | os.PathLike[str]) -> int:
    """Add files and folders (walked) to an existing upload.json; returns how many entries were added.

    Entries already present (same local path, or same server path) are not added twice.
    """
    if isinstance(files_paths, str):
        files_paths = [files_paths]
    if not isinstance(files_paths, list | tuple) or not all(isinstance(p, str) for p in files_paths):
        raise TypeError("files_paths must be a path or a list of paths (str)")
    target = Path(upload_path)
    if not target.is_file():
        raise FileNotFoundError(f"upload.json not found: {target} (append_to_upload needs an existing one)")
    if target.stat().st_size == 0:
        raise ManifestInvalid([EntryProblem(0, f'{target} is empty; it must hold {{"asset": [...]}}')])
    document = load_upload_json(target, allow_empty=True)  # a malformed file raises here; it is never overwritten
    seen_local = {normalize_local(e.local) for e in document.entries if _absolute(e.local)}
    seen_server = {_clean_or_raw(e.server) for e in document.entries}
    added = 0
    for given in files_paths:
        for local in _walk(given):
            if not is_text(local):
                raise PathRefused(f"path {local!r} is not UTF-8 text; rename it to add it")
            key, server = normalize_local(local), local_to_server(local)
            if key in seen_local or clean_server_path(server) in seen_server:
                continue
            seen_local.add(key)
            seen_server.add(clean_server_path(server))
            document.entries.append(ManifestEntry(local=local, server=server))
            added += 1
    if added:
        write_upload_json(target, document.entries, document.extra)
    return added


def _clean_or_raw(server: str) -> str:
    try:
        return clean_server_path(server)
    except PathRefused:
        return server


def _absolute(local: str) -> bool:
    try:
        normalize_local(local)
    except ValueError:
        return False
    return True
