"""One worker at a time per job: a Redis lock, renewed while the job runs, expiring if the worker dies.

A quick pause-and-resume can enqueue a new run while the old one is still stopping; the new run
waits here until the old one has let go of the partial files.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache

import redis
from django.conf import settings
from redis.exceptions import LockError

LEASE_SECONDS = 30  # a killed worker's job can be picked up again after this long


class JobBusy(Exception):
    """Another run of this job still holds it."""


@lru_cache(maxsize=1)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


@contextmanager
def job_lock(job_id: int, *, wait: float = 30.0) -> Iterator[redis.lock.Lock]:
    lock = _client(settings.REDIS_URL).lock(
        f"{settings.CHANNEL_LAYERS['default']['CONFIG']['prefix']}:job-run:{job_id}",
        timeout=LEASE_SECONDS,
        blocking_timeout=wait,
        thread_local=False,
    )
    if not lock.acquire():
        raise JobBusy(f"job {job_id} is still held by another run")
    try:
        yield lock
    finally:
        with suppress(LockError):  # it expired: someone else may hold it now, and that is theirs
            lock.release()
