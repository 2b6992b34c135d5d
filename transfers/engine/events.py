"""What the runner tells its caller, through one callback. Returning False from it stops the run.

Plain slotted dataclasses, not frozen ones: a frozen __init__ costs ~1 us, paid once per file on runs of
hundreds of thousands. Treat them as read-only all the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class FileStarted:
    item_id: int
    size: int


@dataclass(slots=True)
class BytesSent:
    item_id: int
    count: int
    resumed: bool = False  # verified bytes of a partial file kept from an earlier attempt


@dataclass(slots=True)
class FileRetrying:
    item_id: int
    attempt: int  # the attempt that failed
    delay: float  # seconds before the next one
    error_code: str
    error: str


@dataclass(slots=True)
class FileFinished:
    item_id: int
    ok: bool
    size: int = 0
    checksum: str = ""
    error_code: str = ""
    error: str = ""
    skipped: bool = False  # unchanged since the ledger's record: nothing was sent
    attempts: int = 1
    mtime_ns: int = 0
    resumed: int = 0  # bytes of a partial file kept from an earlier attempt (verified, not sent)


@dataclass(slots=True)
class FileNotSent:
    """The file was not sent and did not fail: the destination has no room for it (now). A partial
    file it left stays for a resume; the caller leaves the file pending, to be tried again."""

    item_id: int
    needed: int  # bytes it still has to write
    reason: str


Event = FileStarted | BytesSent | FileRetrying | FileFinished | FileNotSent
Report = Callable[[Event], bool | None]
# A Report may also offer `report_many(events: Sequence[FileFinished]) -> bool | None`: the runner then
# hands it the files it found unchanged a batch at a time (one call instead of one per file); without
# it, each comes through the Report itself, as every other event does.
