"""Free space at the destination, shared by a run's threads: a file starts only when what it still has
to write fits beside what the files in flight may still write.

Without it, four files in parallel each wrote a partial into a small disk and none completed. Each
file in flight holds a reservation of the bytes it has yet to write (lowered as it writes, since the
filesystem's free space already counts what it wrote); a file that does not fit is not started and
counted as not sent, so the caller can leave it pending and name the shortfall.
"""

from __future__ import annotations

import threading
import time

from transfers.engine.endpoints.base import Destination

MARGIN = 256 << 10  # kept free beyond the reservations: folders, inodes' blocks, a marker file
_RECHECK = 0.5  # seconds between looks at the free space while waiting (someone may free some meanwhile)
_BLOCK = 4096  # a file takes whole blocks: 1,000 files of 10 bytes take 4 MB, not 10 kB
# A free-space reading is reused for this long, and only while what was granted since leaves at least
# _ROOM to spare: a statvfs per file, under the lock, cost the small files more than their copy. Near a
# full disk every file asks again, as before.
_FRESH = 0.5
_ROOM = 64 << 20


def human_bytes(count: float) -> str:
    """`123.4 MB`: decimal units, one decimal, as a disk's size is sold and `df -H` prints it."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{int(count)} bytes" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


class SpaceBudget:
    def __init__(self, storage: Destination, *, margin: int = MARGIN) -> None:
        self.storage = storage
        self.margin = margin
        self._changed = threading.Condition()
        self._held: dict[int, int] = {}  # item -> bytes it may still write
        self.files_not_sent = 0
        self.bytes_not_sent = 0
        self._read_at = -_FRESH  # when free space was last read (monotonic)
        self._left = 0  # that reading, less what was held then and everything granted since

    def reserve(self, item_id: int, needed: int, stop: threading.Event | None = None) -> bool:
        """Hold `needed` bytes for this file when they fit (True); False: do not start it.

        While other files are in flight, a file that does not fit waits for them: what they still
        hold is an estimate (a write shows in the free space a little before it is counted here),
        and a file that ends may leave room. Only with nothing in flight is "no room" final.
        """
        needed = -(-needed // _BLOCK) * _BLOCK
        with self._changed:
            if time.monotonic() - self._read_at < _FRESH and self._left >= needed + self.margin + _ROOM:
                self._left -= needed
                self._held[item_id] = needed
                return True
            while True:
                try:
                    free = self.storage.free_space()
                except (OSError, NotImplementedError):
                    free = None  # a destination that cannot tell: the write itself will say
                left = None if free is None else free - sum(self._held.values())
                if left is None or left >= needed + self.margin:
                    if left is not None:
                        self._read_at, self._left = time.monotonic(), left - needed
                    self._held[item_id] = needed
                    return True
                if not self._held or (stop is not None and stop.is_set()):
                    return False
                self._changed.wait(_RECHECK)

    def wrote(self, item_id: int, count: int) -> None:
        with self._changed:
            held = self._held.get(item_id)
            if held is not None:
                self._held[item_id] = max(0, held - count)

    def release(self, item_id: int) -> None:
        with self._changed:
            if self._held.pop(item_id, None) is not None:
                self._changed.notify_all()

    def not_sent(self, needed: int) -> None:
        with self._changed:
            self.files_not_sent += 1
            self.bytes_not_sent += needed

    def reason(self, label: str) -> str:
        try:
            free = self.storage.free_space()
        except (OSError, NotImplementedError):
            free = 0
        return f"destination full: needs {human_bytes(self.bytes_not_sent)}, has {human_bytes(free)} on {label}"
