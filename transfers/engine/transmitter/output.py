"""The transmitter's stdout, one line at a time, as typed events (vocabulary: sdk-spec §5.2).

The binary prints one line per file event, prefixed by the direction: "upload file begin (<path>)",
"upload file progress (<path>) ... speed: N KB/S, progress: P%", "upload file done (<path>)",
"upload file fail (<path>) <reason>", "upload file interrupt (<path>)"; connection lines; a summary
("task success: all files are success", "task failure: ..."); and manifest errors. Its exit code, not
its summary, decides success (process.py); these events say which file is where.

A path may itself hold ")" or "(": when the caller knows the paths it asked for, they are matched
exactly; otherwise the last ")" of the relevant part closes the path. Lines are decoded as UTF-8,
then GBK (the binary writes the local code page on Chinese Windows builds), then with replacement.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

Direction = Literal["upload", "download", ""]


@dataclass(frozen=True, slots=True)
class FileBegin:
    direction: Direction
    path: str


@dataclass(frozen=True, slots=True)
class FileProgress:
    direction: Direction
    path: str
    speed_kbps: float | None = None
    percent: float | None = None  # 0..100, when the line gives a percentage
    done: int | None = None  # bytes, when the line gives "progress: done/total"
    total: int | None = None


@dataclass(frozen=True, slots=True)
class FileDone:
    direction: Direction
    path: str


@dataclass(frozen=True, slots=True)
class FileFail:
    direction: Direction
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class FileInterrupt:
    direction: Direction
    path: str


@dataclass(frozen=True, slots=True)
class Connecting:
    """ "send connect request to transmit server"."""


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """ "transmit server connection exception", or the Aspera engine's "Failed to open TCP connection"
    (what the real binary prints for a closed port)."""

    text: str


Outcome = Literal["retry", "file_failed", "success"]


@dataclass(frozen=True, slots=True)
class TaskSummary:
    outcome: Outcome
    text: str


@dataclass(frozen=True, slots=True)
class ManifestError:
    """ "get path (...) info failed" or "load local-path-pairs (...) failed while ...": the run's
    input was refused (a missing local path, a malformed manifest)."""

    path: str
    text: str


@dataclass(frozen=True, slots=True)
class Other:
    text: str


FileEvent = FileBegin | FileProgress | FileDone | FileFail | FileInterrupt
OutputEvent = FileEvent | Connecting | ConnectionFailed | TaskSummary | ManifestError | Other

_FILE = re.compile(r"(?:(upload|download)\s+)?file (begin|progress|done|fail|interrupt) \(")
_SPEED = re.compile(r"speed:\s*([0-9.]+)", re.IGNORECASE)
_PERCENT = re.compile(r"progress:\s*([0-9.]+)\s*%", re.IGNORECASE)
_FRACTION = re.compile(r"progress:\s*([0-9]+)\s*/\s*([0-9]+)", re.IGNORECASE)
_PATH_INFO = re.compile(r"get path \((.*)\) info failed")
_PAIRS = re.compile(r"(?:load|parse|read) local-path-pairs \((.*?)\) failed")
_SUMMARIES: tuple[tuple[str, Outcome], ...] = (
    ("task failure: has recoverable error, need retry", "retry"),
    ("task failure: at least one file is failure", "file_failed"),
    ("task success: all files are success", "success"),
    ("task all success", "success"),
)


_PLAIN_KINDS: dict[str, type[FileBegin | FileDone | FileInterrupt]] = {
    "begin": FileBegin,
    "done": FileDone,
    "interrupt": FileInterrupt,
}


def decode(raw: bytes) -> str:
    """UTF-8, else GBK, else UTF-8 with replacement characters; without the line end."""
    for encoding in ("utf-8", "gbk"):
        try:
            return raw.decode(encoding).rstrip("\r\n")
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


def _known(rest: str, known: Collection[str]) -> tuple[str, str] | None:
    """The longest known path that `rest` starts with, followed by ")": each ")" of the line, from the
    last, is looked up (a set's lookup: a line costs its ")"s, not the number of paths of the run)."""
    if not known:
        return None
    end = len(rest)
    while (end := rest.rfind(")", 0, end)) > 0:
        if rest[:end] in known:
            return rest[:end], rest[end + 1 :]
    return None


def _split_path(rest: str, known: Collection[str], *, until: str | None = None) -> tuple[str, str]:
    """(path, what follows its closing parenthesis) from the text after "file <kind> ("."""
    if (exact := _known(rest, known)) is not None:
        return exact
    part = rest
    if until is not None and (cut := part.find(until)) >= 0:
        part = part[:cut]
    close = part.rfind(")")
    if close < 0:
        return rest.strip(), ""
    return rest[:close], rest[close + 1 :]


def parse_line(line: str | bytes, known: Collection[str] = ()) -> OutputEvent:
    """One line of output as an event; `known` are the paths the run named (matched exactly)."""
    text = decode(line) if isinstance(line, bytes) else line.rstrip("\r\n")
    match = _FILE.search(text)
    if match:
        direction: Direction = match.group(1) or ""  # type: ignore[assignment]
        kind, rest = match.group(2), text[match.end() :]
        if kind == "progress":
            path, tail = _split_path(rest, known, until=" speed:" if " speed:" in rest else " progress:")
            return _progress(direction, path, tail)
        if kind == "fail":
            # the reason follows the path: without a known path, the first ") " closes it
            exact = _known(rest, known)
            cut = rest.find(") ")
            path, tail = exact or ((rest[:cut], rest[cut + 1 :]) if cut >= 0 else _split_path(rest, ()))
            return FileFail(direction, path, tail.strip(" ,:") or "file failed")
        path, _ = _split_path(rest, known)
        return _PLAIN_KINDS[kind](direction, path)
    lowered = text.lower()
    if "transmit server connection exception" in lowered or "failed to open tcp connection" in lowered:
        return ConnectionFailed(text.strip())
    if "send connect request to transmit server" in lowered:
        return Connecting()
    for phrase, outcome in _SUMMARIES:
        if phrase in lowered:
            return TaskSummary(outcome, text.strip())
    if (found := _PATH_INFO.search(text)) or (found := _PAIRS.search(text)):
        return ManifestError(found.group(1), text.strip())
    return Other(text)


def _progress(direction: Direction, path: str, tail: str) -> FileProgress:
    speed = _SPEED.search(tail)
    percent = _PERCENT.search(tail)
    fraction = _FRACTION.search(tail)
    return FileProgress(
        direction,
        path,
        speed_kbps=float(speed.group(1)) if speed else None,
        percent=float(percent.group(1)) if percent else None,
        done=int(fraction.group(1)) if fraction else None,
        total=int(fraction.group(2)) if fraction else None,
    )
