"""upload.json manifests (the SDK's `transmit_type="upload_json"`): parsing and validation.

Every problem names the entry (1-based, as a user counts them in the file) and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transfers.engine.paths import PathRefused, clean_server_path, local_source

_MAX_PROBLEMS_IN_MESSAGE = 20


@dataclass(frozen=True)
class ManifestEntry:
    local: str
    server: str


@dataclass(frozen=True)
class EntryProblem:
    number: int  # 1-based entry number; 0 for the file as a whole
    reason: str

    def __str__(self) -> str:
        return f"entry {self.number}: {self.reason}" if self.number else self.reason


class ManifestInvalid(ValueError):
    def __init__(self, problems: Sequence[EntryProblem]) -> None:
        self.problems = list(problems)
        shown = "; ".join(str(p) for p in self.problems[:_MAX_PROBLEMS_IN_MESSAGE])
        more = len(self.problems) - _MAX_PROBLEMS_IN_MESSAGE
        super().__init__(shown + (f"; and {more} more" if more > 0 else ""))


def parse_upload_json(data: bytes) -> list[ManifestEntry]:
    """Entries of an upload.json (`{"asset": [{"local": ..., "server": ...}, ...]}`), shape-checked."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestInvalid([EntryProblem(0, f"not UTF-8 text (bad byte at offset {exc.start})")]) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestInvalid([EntryProblem(0, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]) from None
    if not isinstance(document, dict) or not isinstance(document.get("asset"), list):
        raise ManifestInvalid([EntryProblem(0, 'expected an object with an "asset" list')])
    entries: list[ManifestEntry] = []
    problems: list[EntryProblem] = []
    for number, item in enumerate(document["asset"], start=1):
        if not isinstance(item, dict):
            problems.append(EntryProblem(number, "expected an object with 'local' and 'server'"))
            continue
        local, server = item.get("local"), item.get("server")
        if isinstance(local, str) and isinstance(server, str):
            entries.append(ManifestEntry(local=local, server=server))
            continue
        bad = [key for key, value in (("local", local), ("server", server)) if not isinstance(value, str)]
        problems.append(EntryProblem(number, f"{' and '.join(bad)} must be a string"))
    if problems:
        raise ManifestInvalid(problems)
    if not entries:
        raise ManifestInvalid([EntryProblem(0, "the manifest lists no files")])
    return entries


def check_entries(entries: Sequence[ManifestEntry], *, allowed_roots: Sequence[Path]) -> list[EntryProblem]:
    """Path problems: a server path escaping its root or repeated, a local path outside the allowed roots."""
    problems: list[EntryProblem] = []
    first_seen: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        try:
            server = clean_server_path(entry.server)
            local_source(entry.local, allowed_roots)
        except PathRefused as exc:
            problems.append(EntryProblem(number, str(exc)))
            continue
        if server in first_seen:
            problems.append(EntryProblem(number, f"server path {entry.server!r} repeats entry {first_seen[server]}"))
        else:
            first_seen[server] = number
    return problems
