"""One run at a time per job: a Redis lease, renewed by its own thread, expiring if the worker dies.

A quick pause-and-resume can enqueue a new run while the old one is still stopping; the new run
waits here until the old one has let go of the partial files. The renewal runs apart from the
job's database writes and disk syncs, so a slow sync cannot let the lease lapse; if it is lost
anyway (Redis restarted, the process stalled), `lost` is set and the run must stop at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache

import redis
from django.conf import settings
from redis.exceptions import LockError, RedisError

logger = logging.getLogger(__name__)

LEASE_SECONDS = 30  # a killed worker's job can be picked up again after this long
_RENEW_EVERY = LEASE_SECONDS / 6


class JobBusy(Exception):
    """Another run of this job still holds it."""


class Lease:
    def __init__(self, lock: redis.lock.Lock) -> None:
        self._lock = lock
        self._done = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="rvweb-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._done.wait(_RENEW_EVERY):
            try:
                self._lock.reacquire()
            except (LockError, RedisError):
                logger.exception("lease %s lost", self._lock.name)
                self.lost.set()
                return

    def release(self) -> None:
        self._done.set()
        self._thread.join()
        with suppress(LockError, RedisError):  # expired: someone else may hold it now, and that is theirs
            self._lock.release()


@lru_cache(maxsize=1)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


@contextmanager
def job_lock(job_id: int, *, wait: float = 30.0) -> Iterator[Lease]:
    lock = _client(settings.REDIS_URL).lock(
        f"{settings.KEY_PREFIX}:job-run:{job_id}",
        timeout=LEASE_SECONDS,
        blocking_timeout=wait,
        thread_local=False,
    )
    if not lock.acquire():
        raise JobBusy(f"job {job_id} is still held by another run")
    lease = Lease(lock)
    try:
        yield lease
    finally:
        lease.release()
