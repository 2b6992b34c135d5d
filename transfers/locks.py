"""One run at a time per job (and per manifest work): a Redis lease, renewed by its own thread,
expiring if the worker dies.

A quick pause-and-resume can enqueue a new run while the old one is still stopping; the new run
waits here until the old one has let go of the partial files. The renewal runs apart from the
job's database writes and disk syncs, so a slow sync cannot let the lease lapse. A Redis that does
not answer for a moment is ridden out; the lease is lost (`lost` is set and the run must stop at
once) when Redis says it is no longer ours (it restarted empty, or it expired) or when it could not
be renewed for nearly its whole lifetime, since by then another worker may rightly take the job.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache

import redis
from django.conf import settings
from redis.exceptions import LockError, RedisError

logger = logging.getLogger(__name__)

LEASE_SECONDS = 30  # a killed worker's job can be picked up again after this long
_RENEW_EVERY = LEASE_SECONDS / 6
# Give up a little before the key would expire: after that another run may hold it.
_RENEW_PATIENCE = LEASE_SECONDS - _RENEW_EVERY
_REDIS_TIMEOUT = 5.0  # a stopped (not dead) Redis must not hang the renewal or a recovery round


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
        renewed = time.monotonic()
        while not self._done.wait(_RENEW_EVERY):
            try:
                self._lock.reacquire()
                renewed = time.monotonic()
            except LockError:
                logger.warning("lease %s lost: Redis no longer holds it for this run", self._lock.name)
                self.lost.set()
                return
            except RedisError as exc:
                if time.monotonic() - renewed < _RENEW_PATIENCE:
                    logger.warning("lease %s not renewed (%s); trying again", self._lock.name, type(exc).__name__)
                    continue
                logger.warning("lease %s lost: Redis did not answer for %.0fs", self._lock.name, _RENEW_PATIENCE)
                self.lost.set()
                return

    def release(self) -> None:
        self._done.set()
        self._thread.join()
        with suppress(LockError, RedisError):  # expired: someone else may hold it now, and that is theirs
            self._lock.release()


@lru_cache(maxsize=1)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=_REDIS_TIMEOUT, socket_connect_timeout=_REDIS_TIMEOUT, health_check_interval=10
    )


def _key(job_id: int) -> str:
    return f"{settings.KEY_PREFIX}:job-run:{job_id}"


def _work_key(work_id: int) -> str:
    return f"{settings.KEY_PREFIX}:manifest-work-run:{work_id}"


@contextmanager
def _lease(key: str, *, wait: float, busy: str) -> Iterator[Lease]:
    lock = _client(settings.REDIS_URL).lock(key, timeout=LEASE_SECONDS, blocking_timeout=wait, thread_local=False)
    if not lock.acquire(blocking=wait > 0):
        raise JobBusy(busy)
    lease = Lease(lock)
    try:
        yield lease
    finally:
        lease.release()


def job_lock(job_id: int, *, wait: float = 30.0) -> contextlib.AbstractContextManager[Lease]:
    return _lease(_key(job_id), wait=wait, busy=f"job {job_id} is still held by another run")


def work_lock(work_id: int) -> contextlib.AbstractContextManager[Lease]:
    """A manifest work's lease (transfers.manifest_work.work_run); JobBusy at once if another run holds it."""
    return _lease(_work_key(work_id), wait=0, busy=f"manifest work {work_id} is held by another run")


def leases_held(job_ids: list[int]) -> set[int]:
    """The jobs among `job_ids` that some run holds now. Raises RedisError when Redis is away."""
    if not job_ids:
        return set()
    found = _client(settings.REDIS_URL).exists  # one round trip per job is fine: few jobs run at once
    return {job_id for job_id in job_ids if found(_key(job_id))}


def works_held(work_ids: list[int]) -> set[int]:
    """The manifest works among `work_ids` that some run holds now. Raises RedisError when Redis is away."""
    if not work_ids:
        return set()
    found = _client(settings.REDIS_URL).exists
    return {work_id for work_id in work_ids if found(_work_key(work_id))}


def redis_was_emptied() -> bool:
    """True once after Redis lost its keys (a restart of the embedded one keeps nothing), and on
    the first call against a fresh Redis: the messages of queued jobs may have gone with them."""
    return bool(_client(settings.REDIS_URL).set(f"{settings.KEY_PREFIX}:alive", "1", nx=True))
