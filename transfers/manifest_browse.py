"""Browsing a manifest's entries: filters, keyset pages, and the server-side folder picker.

Pages are keyset pages on (manifest, number), the unique index every manifest already has: the last
page of a 500,000-entry manifest costs what the first does (OFFSET would walk every row before it).
Filters (see forms.EntryFilterForm) narrow the walk; "uploaded" asks the account's upload ledger,
one index look-up per entry, for a record of the entry's storage path with the entry's size.

The picker lists one folder at a time, opened through engine.localfs.LocalTree: every component is
walked from a descriptor of an allowed root with O_NOFOLLOW, so `..`, an absolute path elsewhere or a
symlink anywhere on the way (swapped in after an earlier check, too) is refused, never followed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Exists, F, Func, OuterRef, QuerySet, TextField, Value
from django.db.models.functions import Replace

from transfers.engine.localfs import LocalTree
from transfers.engine.manifest import is_text
from transfers.engine.paths import PathRefused
from transfers.models import Manifest, ManifestEntry, UploadRecord

PAGE = 100
WINDOW = 100_000  # entry numbers one filtered page searches at most (~50 ms on SQLite)
PICKER_LIMIT = 2000  # entries of one folder listed at most (the rest: "and N more")


def _ledger_server() -> Func:
    """The entry's server path as the ledger spells it (engine.paths.clean_server_path) in the usual
    case: slashes, no leading slash."""
    return Func(Replace(F("server"), Value("\\"), Value("/")), Value("/"), function="LTRIM", output_field=TextField())


def filtered(entries: QuerySet[ManifestEntry], manifest: Manifest, filters: dict[str, Any]) -> QuerySet[ManifestEntry]:
    """`entries` (of `manifest`, from selectors) narrowed by an EntryFilterForm's cleaned data."""
    if filters.get("q"):
        entries = entries.filter(local__contains=filters["q"])
    if filters.get("folder"):
        entries = entries.filter(local__startswith=filters["folder"].rstrip("/\\") + "/")
    if filters.get("ext"):
        entries = entries.filter(local__endswith="." + filters["ext"])
    if filters.get("size_min") is not None:
        entries = entries.filter(size__gte=filters["size_min"])
    if filters.get("size_max") is not None:
        entries = entries.filter(size__lte=filters["size_max"])
    if filters.get("uploaded") in ("yes", "no"):
        record = UploadRecord.objects.filter(
            account_id=manifest.account_id, area="input", server=OuterRef("ledger_server"), size=OuterRef("size")
        )
        entries = entries.alias(ledger_server=_ledger_server()).alias(in_ledger=Exists(record))
        entries = entries.filter(in_ledger=filters["uploaded"] == "yes")
    return entries


@dataclass
class Page:
    entries: list[ManifestEntry]
    after: int | None  # the cursor of the next page (None: this is the last)
    before: int | None  # the cursor of the previous page (None: this is the first)
    searched: tuple[int, int] | None  # a filtered page that ran out of its window: the entries it searched


def page(
    entries: QuerySet[ManifestEntry],
    *,
    last: int,
    after: int | None = None,
    before: int | None = None,
    size: int | None = None,
    window: int | None = None,
) -> Page:
    """One keyset page in entry order: the entries after `after`, or (going back) those before `before`.

    `window` bounds the entry numbers a filtered page searches (a filter that matches nothing would
    otherwise read the whole manifest): a page that finds fewer than `size` in it ends there, and its
    cursor continues the search. `last` is the manifest's last entry number.
    """
    count = size or PAGE
    rows = entries.only("pk", "number", "local", "server", "size")
    if before is not None:
        low = max(0, before - 1 - window) if window else 0
        found = list(rows.filter(number__lt=before, number__gt=low).order_by("-number")[: count + 1])
        earlier = found[count].number + 1 if len(found) > count else (low + 1 if low > 0 else None)
        found = found[:count][::-1]
        searched = (low + 1, before - 1) if window and len(found) < count else None
        shown_last = found[-1].number if found else before - 1
        return Page(found, shown_last if shown_last < last else None, earlier, searched)
    start = after or 0
    high = start + window if window else None
    if high is not None:
        rows = rows.filter(number__lte=high)
    found = list(rows.filter(number__gt=start).order_by("number")[: count + 1])
    later = found[count - 1].number if len(found) > count else (high if high is not None and high < last else None)
    found = found[:count]
    earlier = (found[0].number if found else start + 1) if start else None
    searched = (start + 1, min(high, last)) if high is not None and len(found) < count else None
    return Page(found, later, earlier, searched)


@dataclass
class Listed:
    path: str
    parent: str | None  # None at an allowed root
    folders: list[str]
    files: list[tuple[str, int]]
    others: list[str]  # symlinks, devices...: shown, never entered nor picked
    more: int


def roots() -> list[str]:
    return [str(root) for root in settings.ALLOWED_LOCAL_ROOTS if os.path.isdir(root)]


def folder_list(path: str) -> Listed:
    """One folder beneath an allowed root, sorted; PathRefused (outside, `..`, a symlink on the way) or
    OSError (missing, not a folder, unreadable)."""
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise PathRefused(f"{path!r} is not an absolute path")
    if any(part == ".." for part in path.split("/")):
        raise PathRefused(f"{path!r} contains '..'")
    text = "/" + "/".join(part for part in path.split("/") if part not in ("", "."))
    folders: list[str] = []
    files: list[tuple[str, int]] = []
    others: list[str] = []
    more = 0
    with LocalTree(settings.ALLOWED_LOCAL_ROOTS) as tree, tree.folder(text) as fd:
        for entry in sorted(os.scandir(fd), key=lambda e: e.name):
            if len(folders) + len(files) + len(others) >= PICKER_LIMIT:
                more += 1
                continue
            if not is_text(entry.name):  # shown as such, never picked: it could not be sent anyway
                shown = os.fsencode(entry.name).decode("utf-8", "replace")
                others.append(f"{shown} (not UTF-8 text)")
                continue
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                folders.append(entry.name)
            elif stat.S_ISREG(info.st_mode):
                files.append((entry.name, info.st_size))
            else:
                others.append(entry.name)
    at_root = any(text == os.fspath(root).rstrip("/") for root in settings.ALLOWED_LOCAL_ROOTS) or any(
        text == os.path.realpath(root) for root in settings.ALLOWED_LOCAL_ROOTS
    )
    return Listed(text, None if at_root else (text.rsplit("/", 1)[0] or "/"), folders, files, others, more)
