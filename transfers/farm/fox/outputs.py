"""Walking the output storage through getOutputUserDirFile (one call per folder).

Each entry's path is made from the folder that was listed and the entry's own name, never taken from
the farm's `filePath` as it is: a name holding a `/`, a `\\`, `.` or `..` is skipped (logged), so an
answer cannot place a file outside the folder asked for. The walk is bounded in depth and in folders
(more folders than the bound is a FoxError: a partial listing never passes for the whole).
`lastModify` is the farm's local time (UTC+8, like its serverTime, §7.4).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Protocol

from transfers.engine.endpoints.base import StoredFile
from transfers.farm.fox.errors import FoxError

logger = logging.getLogger(__name__)

FARM_TIME = timezone(timedelta(hours=8))
MAX_DEPTH = 64
MAX_FOLDERS = 100_000


class OutputFolderRefused(FoxError, ValueError):
    """A folder leaving the output area: asked by a caller (a ValueError) or named by the farm as a task's
    output folder (a FarmError, which pages, the API and the watcher report instead of crashing)."""


class Lister(Protocol):
    def output_files(self, tree_path: str, task_id: int | None = None) -> list[dict[str, object]]: ...


def walk(client: Lister, prefix: str = "") -> list[StoredFile]:
    """Every file under `prefix` of the output area (paths relative to the area, `/`-separated)."""
    return list(_walk(client, _clean(prefix)))


def _walk(client: Lister, top: str) -> Iterator[StoredFile]:
    folders = [(top, 0)]
    seen = 0
    while folders:
        folder, depth = folders.pop()
        seen += 1
        if seen > MAX_FOLDERS:  # a part of a listing must not pass for the whole: a download would "complete"
            raise FoxError(f"the farm's output listing under {top or '/'!r} has more than {MAX_FOLDERS} folders")
        for entry in client.output_files("/" + folder if folder else "/"):
            name = str(entry.get("fileName") or "")
            if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
                logger.warning("output entry %r under %r skipped: not a plain name", name, folder)
                continue
            path = f"{folder}/{name}" if folder else name
            if entry.get("directory"):
                if depth < MAX_DEPTH:
                    folders.append((path, depth + 1))
                continue
            yield StoredFile(path=path, size=_size(entry.get("fileSize")), mtime_ns=_mtime_ns(entry.get("lastModify")))


def _clean(prefix: str) -> str:
    parts = [part for part in (prefix or "").replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise OutputFolderRefused(f"the output folder {prefix!r} leaves the output area")
    return "/".join(parts)


def _size(value: object) -> int:
    try:
        return max(0, int(str(value)))
    except ValueError:
        return 0


def _mtime_ns(value: object) -> int:
    try:
        when = datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=FARM_TIME)
    except ValueError:
        return 0
    return int(when.timestamp()) * 1_000_000_000
