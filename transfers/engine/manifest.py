"""Manifests: upload.json (`transmit_type="upload_json"`) and upload lists (`transmit_type="upload_list"`).

Reading an upload.json is one msgspec pass over the file (mapped, not copied) into compact structs:
500,000 entries take ~0.2 s and ~220 MB peak. Other top-level keys are kept byte for byte. When the
fast pass fails, a slow pass explains every problem: each names the entry (1-based, as a user counts
them in the file) or line, and the reason.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from transfers.engine.paths import PathMap, PathRefused, clean_server_path, local_source, local_to_server, normalize_local

_MAX_PROBLEMS_IN_MESSAGE = 20
_MAX_PROBLEMS = 1000  # a broken 500k-entry file must not make a 500k-line error


class ManifestEntry(msgspec.Struct, frozen=True, gc=False):
    local: str
    server: str


@dataclass(frozen=True)
class EntryProblem:
    number: int  # 1-based entry (or line) number; 0 for the file as a whole
    reason: str
    unit: str = "entry"

    def __str__(self) -> str:
        return f"{self.unit} {self.number}: {self.reason}" if self.number else self.reason


class ManifestInvalid(ValueError):
    def __init__(self, problems: Sequence[EntryProblem]) -> None:
        self.problems = list(problems)
        shown = "; ".join(str(p) for p in self.problems[:_MAX_PROBLEMS_IN_MESSAGE])
        more = len(self.problems) - _MAX_PROBLEMS_IN_MESSAGE
        super().__init__(shown + (f"; and {more} more" if more > 0 else ""))


@dataclass
class UploadDocument:
    entries: list[ManifestEntry]
    extra: dict[str, msgspec.Raw] = field(default_factory=dict)  # other top-level keys, verbatim


_top = msgspec.json.Decoder(dict[str, msgspec.Raw])
_assets = msgspec.json.Decoder(list[ManifestEntry])
_encoder = msgspec.json.Encoder()
_NOT_AN_ASSET_LIST = 'expected an object with an "asset" list'
_TOO_DEEP = "not a valid upload.json: its values are nested too deeply"
_BOM = b"\xef\xbb\xbf"


def _explain(data: bytes | memoryview | mmap.mmap) -> list[EntryProblem]:
    """The slow pass: every shape problem of a document the fast pass refused."""
    raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return [EntryProblem(0, f"not UTF-8 text (bad byte at offset {exc.start}) on line {line}")]
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return [EntryProblem(0, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
    except RecursionError:
        return [EntryProblem(0, _TOO_DEEP)]
    except ValueError:  # Python refuses integers of more than 4,300 digits
        return [EntryProblem(0, "not valid JSON: a number too long to read")]
    if not isinstance(document, dict) or not isinstance(document.get("asset"), list):
        return [EntryProblem(0, _NOT_AN_ASSET_LIST)]
    problems = []
    for number, item in enumerate(document["asset"], start=1):
        if not isinstance(item, dict):
            problems.append(EntryProblem(number, "expected an object with 'local' and 'server'"))
            continue
        bad = [key for key in ("local", "server") if not isinstance(item.get(key), str)]
        if bad:
            problems.append(EntryProblem(number, f"{' and '.join(bad)} must be a string"))
        elif not all(is_text(item[key]) for key in ("local", "server")):
            problems.append(EntryProblem(number, "a path holds an escaped lone surrogate (\\ud800-\\udfff), which is not text"))
        if len(problems) >= _MAX_PROBLEMS:
            break
    return problems or [EntryProblem(0, "not a valid upload.json")]


def is_text(text: str) -> bool:
    """Encodable as UTF-8: not holding lone surrogates (from `\\ud800` escapes or undecodable file names)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_entries(entries: Sequence[ManifestEntry]) -> list[EntryProblem]:
    """Problems any reader must refuse: empty paths, NUL bytes, '..', a server path given twice."""
    problems: list[EntryProblem] = []
    first_seen: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        if not entry.local.strip():
            problems.append(EntryProblem(number, "local path is empty"))
        elif "\x00" in entry.local:
            problems.append(EntryProblem(number, "local path contains a NUL byte"))
        try:
            server = clean_server_path(entry.server)
        except PathRefused as exc:
            problems.append(EntryProblem(number, str(exc)))
        else:
            first = first_seen.setdefault(server, number)
            if first != number:
                problems.append(EntryProblem(number, f"server path {entry.server!r} repeats entry {first}"))
        if len(problems) >= _MAX_PROBLEMS:
            break
    return problems


def read_upload_json(data: bytes | memoryview | mmap.mmap, *, allow_empty: bool = False, validate: bool = True) -> UploadDocument:
    """An upload.json document, strictly validated; raises ManifestInvalid naming every problem.

    validate=False checks the shape only, for callers that run check_entries themselves.
    """
    if data[:3] == _BOM:
        data = memoryview(data)[3:]  # Windows editors start UTF-8 files with a byte-order mark
    try:
        top = _top.decode(data)
        entries = _assets.decode(top.pop("asset"))
    except (msgspec.DecodeError, UnicodeDecodeError, KeyError, RecursionError):
        # RecursionError: msgspec's answer to values nested ~1,000 deep (the slow pass says so too)
        raise ManifestInvalid(_explain(data)) from None
    if not entries and not allow_empty:
        raise ManifestInvalid([EntryProblem(0, "the manifest lists no files")])
    problems = validate_entries(entries) if validate else []
    if problems:
        raise ManifestInvalid(problems)
    return UploadDocument(entries=entries, extra=top)


def parse_upload_json(data: bytes) -> list[ManifestEntry]:
    return read_upload_json(data).entries


def load_upload_json(path: str | os.PathLike[str], *, allow_empty: bool = False, validate: bool = True) -> UploadDocument:
    """Read an upload.json from disk through a memory map instead of copying it into memory first."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise ManifestInvalid([EntryProblem(0, f"{os.fspath(path)} is empty")])
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            document = read_upload_json(mapped, allow_empty=allow_empty, validate=False)
            # Raw values point into the mapping: copy the (small) extra keys out before it closes.
            document.extra = {key: msgspec.Raw(bytes(value)) for key, value in document.extra.items()}
        finally:
            # An error's traceback may still hold a view into it; the collector closes it later then.
            with contextlib.suppress(BufferError):
                mapped.close()
    # Validated after the mapping is gone: its pages and validation's index never peak together.
    problems = validate_entries(document.entries) if validate else []
    if problems:
        raise ManifestInvalid(problems)
    return document


def encode_upload_json(entries: Sequence[ManifestEntry], extra: dict[str, msgspec.Raw] | None = None) -> bytes:
    return _encoder.encode({**(extra or {}), "asset": entries})


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder and rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_upload_json(
    path: str | os.PathLike[str], entries: Sequence[ManifestEntry], extra: dict[str, msgspec.Raw] | None = None
) -> None:
    write_atomic(Path(path), encode_upload_json(entries, extra))


def read_upload_list(data: bytes) -> list[tuple[int, str]]:
    """(line number, path) of an upload list: one absolute local path per line, file or folder.

    The extension (.txt or .json) does not matter; the content is lines. Blank lines are skipped.
    """
    paths: list[tuple[int, str]] = []
    problems: list[EntryProblem] = []
    for number, raw in enumerate(data.removeprefix(_BOM).split(b"\n"), start=1):
        line = raw.rstrip(b"\r")
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(EntryProblem(number, f"not UTF-8 text (bad byte at column {exc.start + 1})", "line"))
            continue
        if "\x00" in text:
            problems.append(EntryProblem(number, "path contains a NUL byte", "line"))
            continue
        paths.append((number, text.strip()))
    if problems:
        raise ManifestInvalid(problems)
    if not paths:
        raise ManifestInvalid([EntryProblem(0, "the upload list names no files")])
    return paths


def check_entries(
    entries: Iterable[ManifestEntry], *, allowed_roots: Sequence[Path], path_map: PathMap | None = None
) -> list[EntryProblem]:
    """validate_entries, plus: every local path, once mapped for this worker, lies under an allowed root."""
    entries = list(entries)
    path_map = path_map or PathMap()
    problems = validate_entries(entries)
    for number, entry in enumerate(entries, start=1):
        if len(problems) >= _MAX_PROBLEMS:
            break
        if entry.local.strip() and "\x00" not in entry.local:
            try:
                local_source(_mapped(entry.local, path_map), allowed_roots)
            except PathRefused as exc:
                problems.append(EntryProblem(number, str(exc)))
    return sorted(problems, key=lambda p: p.number)


def _mapped(local: str, path_map: PathMap) -> str:
    mapped = path_map.apply(local)
    if not mapped.startswith("/"):
        raise PathRefused(f"local path {local!r} is a Windows path and no path mapping rule of this farm account covers it")
    return mapped


def expand_upload_list(
    lines: Sequence[tuple[int, str]], *, allowed_roots: Sequence[Path], path_map: PathMap | None = None
) -> list[ManifestEntry]:
    """Entries of an upload list: a file line is one entry, a folder line one per file under it.

    Local paths keep the list's spelling (`D:/shots/a.exr` for a folder `D:\\shots`); server paths
    follow the SDK's rule (engine.paths.local_to_server).
    """
    path_map = path_map or PathMap()
    entries: list[ManifestEntry] = []
    problems: list[EntryProblem] = []
    for number, given in lines:
        try:
            real = local_source(_mapped(given, path_map), allowed_roots)
            real.stat()  # a name too long, a folder we may not enter: said here, not raised by is_file()
            base = normalize_local(given).rstrip("/")
            if real.is_file():
                entries.append(ManifestEntry(local=given, server=local_to_server(given)))
            elif real.is_dir():
                for folder, dirs, files in os.walk(real):
                    dirs.sort()
                    relative = Path(folder).relative_to(real).as_posix()
                    prefix = base if relative == "." else f"{base}/{relative}"
                    for name in sorted(files):
                        if not is_text(name):
                            raise PathRefused(f"file name {name!r} in {folder!r} is not UTF-8 text; rename it to send it")
                        entries.append(ManifestEntry(f"{prefix}/{name}", local_to_server(f"{prefix}/{name}")))
            else:
                problems.append(EntryProblem(number, f"{given!r} does not exist", "line"))
        except PathRefused as exc:
            problems.append(EntryProblem(number, str(exc), "line"))
        except FileNotFoundError:
            problems.append(EntryProblem(number, f"{given!r} does not exist", "line"))
        except OSError as exc:
            problems.append(EntryProblem(number, f"{given!r} cannot be read: {exc.strerror or exc}", "line"))
    if problems:
        raise ManifestInvalid(problems)
    if not entries:
        raise ManifestInvalid([EntryProblem(0, "the upload list names no files")])
    return entries
