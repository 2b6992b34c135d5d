"""Speed limits: a token bucket in bytes per second, shared by every thread of a job, changeable live.

`max_speed` is in KB/s, the SDK's unit (1 KB = 1024 bytes); None means no limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_BURST_SECONDS = 0.25  # how much unused allowance may pile up; keeps the average honest


def max_speed_to_rate(max_speed: int | str | None) -> float | None:
    """Bytes per second from the SDK's `max_speed` (KB/s, int or numeric string); None/0 is unlimited."""
    if max_speed is None or max_speed == "" or max_speed == 0:
        return None
    try:
        kbps = int(max_speed)
    except (TypeError, ValueError):
        raise ValueError(f"max_speed must be a whole number of KB/s, got {max_speed!r}") from None
    if kbps < 0:
        raise ValueError(f"max_speed must not be negative, got {kbps}")
    return None if kbps == 0 else kbps * 1024.0


class TokenBucket:
    """take(n) waits until n bytes may pass. Debt-based: a large take waits once, in proportion."""

    def __init__(self, rate: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._rate = rate
        self._tokens = 0.0
        self._stamp = clock()

    @property
    def rate(self) -> float | None:
        return self._rate

    def set_rate(self, rate: float | None) -> None:
        """A new rate, live. A debt is kept as the time it stands for, not its bytes: lowering 100 MB/s to
        1 MB/s with 160 MB reserved must not make the next chunk wait 160 s."""
        with self._lock:
            self._refill()
            before = self._rate
            debt = min(self._tokens, 0.0)
            self._rate = rate
            self._tokens = debt * (rate / before) if rate and before else 0.0

    def _refill(self) -> None:
        now = self._clock()
        if self._rate:
            self._tokens = min(self._tokens + (now - self._stamp) * self._rate, self._rate * _BURST_SECONDS)
        self._stamp = now

    def reserve(self, count: int) -> float:
        """Take `count` bytes now and return how long the caller must wait before sending them."""
        with self._lock:
            if not self._rate:
                return 0.0
            self._refill()
            self._tokens -= count
            return -self._tokens / self._rate if self._tokens < 0 else 0.0

    def take(self, count: int, stop: threading.Event | None = None) -> bool:
        """Wait for `count` bytes of allowance; False if `stop` was set while waiting."""
        delay = self.reserve(count)
        if delay <= 0:
            return not (stop and stop.is_set())
        if stop is None:
            time.sleep(delay)
            return True
        return not stop.wait(delay)
