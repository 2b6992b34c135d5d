"""An upload.json read as a stream: entries one at a time, memory bounded whatever the file's size.

engine.manifest reads a whole document at once (fast, but ~450 bytes of memory per entry); a
1.3-million-entry manifest imported by a worker goes through here instead: ijson's C backend (yajl)
hands out parse events, and only the entry being read is kept. Problems use engine.manifest's wording.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO

import ijson

from transfers.engine.manifest import EntryProblem, ManifestEntry, ManifestInvalid

__all__ = ["read_upload_json_stream"]

_NOT_AN_ASSET_LIST = 'expected an object with an "asset" list'
_NOT_AN_OBJECT = "expected an object with 'local' and 'server'"
_BOM = b"\xef\xbb\xbf"
_KEYS = ("local", "server")
_CHUNK = 1 << 16
# An upload.json is 3 levels deep; other top-level keys may nest a little. Deeper is an attack or
# a broken generator, refused as engine.manifest refuses it (msgspec stops near 1,000).
_MAX_DEPTH = 256
# No path needs a run of digits this long (Linux paths stop at 4,096 bytes); Python refuses to read
# integers of more than 4,300.
_MAX_DIGITS = 4096
_LONG_NUMBER = re.compile(rb"[0-9]{%d}" % (_MAX_DIGITS + 1))
_TOO_DEEP = "not a valid upload.json: its values are nested too deeply"
_NOT_TEXT = "a path holds an escaped lone surrogate (\\ud800-\\udfff), which is not text"


class _Reader:
    """A binary file for ijson, minus a leading UTF-8 byte-order mark (Windows editors write one), that
    refuses a number too long to read before the parser sees it: yajl's C backend can crash the
    process on the error Python raises for an integer of more than 4,300 digits."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._first = True
        self._digits = 0  # length of the run of digits that ended the previous chunk

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        if self._first and data:  # ijson reads 0 bytes first, to tell bytes from text
            self._first = False
            data = data.removeprefix(_BOM)
            if not data:
                data = self._handle.read(size)
        self._check(data)
        return data

    def _check(self, data: bytes) -> None:
        if not data:
            return
        head = len(data) - len(data.lstrip(b"0123456789"))
        longest = self._digits + head if head < len(data) else self._digits + len(data)
        if longest > _MAX_DIGITS or _LONG_NUMBER.search(data):
            raise _whole("not valid JSON: a number too long to read")
        self._digits = longest if head == len(data) else len(data) - len(data.rstrip(b"0123456789"))


def _whole(reason: str) -> ManifestInvalid:
    return ManifestInvalid([EntryProblem(0, reason)])


def _decode_problem(exc: Exception) -> ManifestInvalid:
    text = exc.args[0] if exc.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
    if "utf" in text.lower() or isinstance(exc, UnicodeDecodeError):
        return _whole("not UTF-8 text (a byte sequence that is not UTF-8)")
    return _whole(f"not valid JSON: {text}")


def read_upload_json_stream(handle: IO[bytes]) -> Iterator[tuple[int, ManifestEntry | EntryProblem]]:
    """(entry number, entry or its problem) in file order; raises ManifestInvalid for the file as a whole
    (not JSON, not UTF-8, no "asset" list, no entries) — possibly after entries were yielded, since a
    syntax error can sit at the end of the file."""
    depth = 0
    key = ""  # the current key of the top-level object
    in_assets = False
    seen_assets = False
    number = 0
    item: dict[str, str | None] | None = None  # the entry being read; None: not an object
    item_key = ""
    shape: str | None = None  # what is wrong with the document's shape, once seen
    try:
        for event, value in ijson.basic_parse(_Reader(handle), buf_size=_CHUNK):
            if event == "start_map" or event == "start_array":
                depth += 1
                if depth > _MAX_DEPTH:
                    raise _whole(_TOO_DEEP)
                if depth == 1:
                    if event != "start_map":
                        shape = _NOT_AN_ASSET_LIST
                elif depth == 2 and key == "asset" and not seen_assets:
                    seen_assets = True
                    if event != "start_array":
                        shape = _NOT_AN_ASSET_LIST
                    in_assets = shape is None
                elif depth == 3 and in_assets:
                    number += 1
                    item, item_key = ({} if event == "start_map" else None), ""
                elif depth == 4 and in_assets and item is not None and item_key in _KEYS:
                    item[item_key] = None  # an object or a list where a string belongs
                continue
            if event == "end_map" or event == "end_array":
                if depth == 3 and in_assets:
                    yield number, _entry(number, item)
                elif depth == 2 and in_assets:
                    in_assets = False
                depth -= 1
                continue
            # a key or a scalar
            if depth == 0:
                shape = _NOT_AN_ASSET_LIST
            elif depth == 1:
                if event == "map_key":
                    key = value
                elif key == "asset" and not seen_assets:
                    seen_assets, shape = True, _NOT_AN_ASSET_LIST  # "asset": 5
            elif depth == 2 and in_assets:
                number += 1
                yield number, EntryProblem(number, _NOT_AN_OBJECT)
            elif depth == 3 and in_assets and item is not None:
                if event == "map_key":
                    item_key = value
                elif item_key in _KEYS:
                    item[item_key] = value if event == "string" else None
    except ManifestInvalid:
        raise
    except (ijson.JSONError, UnicodeDecodeError, ValueError, OverflowError, RecursionError) as exc:
        # ValueError: also Python's refusal of integers of more than 4,300 digits
        raise _decode_problem(exc) from None
    if depth != 0:
        raise _whole("not valid JSON: the file ends in the middle of the document")
    if shape is not None:
        raise _whole(shape)  # said only now: a syntax error or a nesting too deep anywhere comes first
    if not seen_assets:
        raise _whole(_NOT_AN_ASSET_LIST)
    if number == 0:
        raise _whole("the manifest lists no files")


def _entry(number: int, item: dict[str, str | None] | None) -> ManifestEntry | EntryProblem:
    if item is None:
        return EntryProblem(number, _NOT_AN_OBJECT)
    local, server = item.get("local"), item.get("server")
    if isinstance(local, str) and isinstance(server, str):
        if not (_is_text(local) and _is_text(server)):
            return EntryProblem(number, _NOT_TEXT)
        return ManifestEntry(local=local, server=server)
    bad = [name for name, text in (("local", local), ("server", server)) if not isinstance(text, str)]
    return EntryProblem(number, f"{' and '.join(bad)} must be a string")


def _is_text(text: str) -> bool:
    """Encodable as UTF-8: no lone surrogates (a `\\ud800` escape), which no file name or database takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
