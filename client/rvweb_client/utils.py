"""The SDK's manifest functions on local files, with its names and meaning, without its bugs (sdk-spec §3.4,
§3.5, §8 #7, #9, #16):

* cutting_upload writes no empty trailing chunk, keeps the other top-level keys, creates the target
  folder, removes stale chunks of an earlier cut of the same file (never another file's), and refuses
  a chunk size below 1 and a malformed upload.json, naming the problem.
* append_to_upload walks folders (a single folder string too), dedupes, keeps the other keys, checks
  every path before writing anything, and refuses a malformed upload.json instead of emptying it.
* convert_path: `D:\\a\\b` -> `/D/a/b`, UNC `\\\\host\\share\\x` -> `/host/share/x`, `/mnt/x` stays `/mnt/x`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from rvweb_client.exceptions import RayvisionError

_CUTS = ".rvweb-cuts.json"  # which upload.json each chunk in a folder was cut from


def convert_path(path: str) -> str:
    """The server path of a local path (the SDK's rule, done right in every case); relative paths are refused."""
    text = str(path).replace("\\", "/")
    if len(text) >= 2 and text[1] == ":" and text[0].isalpha():
        if len(text) > 2 and text[2] != "/":
            raise ValueError(f"{path!r} is relative to a drive's current folder; give an absolute path")
        head, rest = text[0].upper(), text[2:]
    elif text.startswith("//"):
        head, rest = "", text[2:]
    elif text.startswith("/"):
        head, rest = "", text
    else:
        raise ValueError(f"{path!r} is not absolute")
    parts = [part for part in rest.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{path!r} contains '..'")
    return "/" + "/".join([head, *parts] if head else parts)


def _load(path: str) -> dict[str, Any]:
    """An upload.json's document; RayvisionError names what is wrong with it (the file is never changed)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise RayvisionError(0, f"upload.json not found: {path}") from None
    except OSError as exc:
        raise RayvisionError(0, f"cannot read {path}: {exc.strerror or exc}") from None
    if not data.strip():
        raise RayvisionError(0, f'{path} is empty; it must hold {{"asset": [...]}}')
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise RayvisionError(0, f"{path} is not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:
        raise RayvisionError(0, f"{path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("asset", []), list):
        raise RayvisionError(
            0, f'{path} must hold an object with an "asset" list: {{"asset": [{{"local": ..., "server": ...}}]}}'
        )
    document.setdefault("asset", [])
    for number, entry in enumerate(document["asset"], start=1):
        if not (isinstance(entry, dict) and isinstance(entry.get("local"), str) and isinstance(entry.get("server"), str)):
            raise RayvisionError(0, f'{path}: asset entry {number} is not {{"local": "...", "server": "..."}}')
    return document


def _write(path: str, document: dict[str, Any]) -> None:
    """Through a temporary file and a rename: a reader sees the old file or the new one, never half."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, indent=2)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def cutting_upload(
    upload_path: str | os.PathLike[str],
    max_resources_number: int | None = None,
    after_cutting_position: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Cut upload.json into `upload_1.json … upload_N.json` of at most `max_resources_number` entries each.

    Returns the chunks' absolute paths; or `[upload_path]` itself when no cut is needed (no size
    given, or no more entries than it), as the SDK does."""
    source = os.path.abspath(os.fspath(upload_path))
    if max_resources_number is not None and (
        isinstance(max_resources_number, bool) or not isinstance(max_resources_number, int) or max_resources_number < 1
    ):
        raise ValueError(f"max_resources_number must be a whole number of at least 1, got {max_resources_number!r}")
    document = _load(source)
    assets = document["asset"]
    if max_resources_number is None or len(assets) <= max_resources_number:
        return [source]
    target = os.path.abspath(os.fspath(after_cutting_position)) if after_cutting_position else os.path.dirname(source)
    count = -(-len(assets) // max_resources_number)
    names = [f"upload_{number}.json" for number in range(1, count + 1)]
    cuts = _read_cuts(target)
    for name in names:
        if os.path.join(target, name) == source:
            raise ValueError(f"cutting {source} into its own folder would overwrite it; give after_cutting_position")
        owner = next((other for other, chunks in cuts.items() if name in chunks and other != source), None)
        if owner is not None:
            raise FileExistsError(f"{os.path.join(target, name)} holds a chunk of {owner}; give another after_cutting_position")
    for number, name in enumerate(names):
        start = number * max_resources_number
        _write(os.path.join(target, name), {**document, "asset": assets[start : start + max_resources_number]})
    for stale in set(cuts.get(source, [])) - set(names):  # chunks of an earlier, larger cut of this same file
        stale_path = os.path.join(target, stale)
        if os.path.exists(stale_path):
            os.unlink(stale_path)
    cuts[source] = names
    _write(os.path.join(target, _CUTS), cuts)
    return [os.path.join(target, name) for name in names]


def _read_cuts(folder: str) -> dict[str, list[str]]:
    try:
        with open(os.path.join(folder, _CUTS), encoding="utf-8") as handle:
            recorded = json.load(handle)
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _walk(path: str) -> Iterator[str]:
    """Files under `path` (itself when it is a file), in a stable order, with `/` separators."""
    if os.path.isfile(path):
        yield path.replace("\\", "/")
        return
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        base = folder.replace("\\", "/").rstrip("/")
        for name in sorted(files):
            yield f"{base}/{name}"


def append_to_upload(files_paths: str | Sequence[str], upload_path: str | os.PathLike[str]) -> int:
    """Add files and folders (walked, also when given as one string) to an existing upload.json;
    returns how many entries were added. An entry already there (same local or same server path) is
    not added twice; a path that does not exist is refused before anything is written."""
    if isinstance(files_paths, (str, os.PathLike)):
        files_paths = [os.fspath(files_paths)]
    if not isinstance(files_paths, (list, tuple)) or not all(isinstance(p, (str, os.PathLike)) for p in files_paths):
        raise TypeError("files_paths must be a path or a list of paths")
    target = os.fspath(upload_path)
    if not os.path.isfile(target):
        raise RayvisionError(0, f"upload.json not found: {target} (append_to_upload needs an existing one)")
    document = _load(target)  # a malformed file raises here; it is never overwritten
    given = [os.path.abspath(os.fspath(p)) for p in files_paths]
    missing = [p for p in given if not os.path.exists(p)]
    if missing:
        raise RayvisionError(0, f"path to append does not exist: {', '.join(missing)}")
    seen_local, seen_server = set(), set()
    for entry in document["asset"]:
        seen_local.add(entry["local"].replace("\\", "/"))
        seen_server.add(_server_key(entry["server"]))
    new: list[tuple[str, str]] = []
    for path in given:
        for local in _walk(path):
            server = convert_path(local)
            if local in seen_local or _server_key(server) in seen_server:
                continue
            seen_local.add(local)
            seen_server.add(_server_key(server))
            new.append((local, server))
    if new:
        document["asset"].extend({"local": local, "server": server} for local, server in new)
        _write(target, document)
    return len(new)


def _server_key(server: str) -> str:
    return "/".join(part for part in server.replace("\\", "/").split("/") if part not in ("", "."))
