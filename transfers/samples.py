"""A running job's speed over time, for the chart on its page: one JobSample row at most every
SAMPLE_EVERY seconds, written by the worker beside its progress messages.

Bounded per job: when a job reaches MAX_SAMPLES rows, every other one is deleted and the interval
doubles, so a job of any length keeps its whole history at a coarser step. Best effort: a sample that
cannot be written is dropped, never a reason to stop a transfer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.db import DatabaseError

from transfers.models import JobSample
from transfers.progress import JobProgress

SAMPLE_EVERY = 2.0  # seconds
MAX_SAMPLES = 1500
logger = logging.getLogger(__name__)


class Sampler:
    """Keeps one job's samples: `offer` every progress message, it writes when the interval has passed."""

    def __init__(self, job_id: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.job_id = job_id
        self.clock = clock
        self.count = JobSample.objects.filter(job_id=job_id).count()  # a resumed job goes on from its samples
        self.every = SAMPLE_EVERY * (2 ** (self.count // MAX_SAMPLES))
        self._next_at = 0.0

    def offer(self, message: JobProgress) -> bool:
        """Write a sample of `message` when the interval has passed; True when written."""
        now = self.clock()
        if now < self._next_at:
            return False
        self._next_at = now + self.every
        at = message["figures_at"] or time.time()
        try:
            JobSample.objects.create(
                job_id=self.job_id,
                at=at,
                speed=max(0.0, float(message["speed"])),
                bytes_done=message["bytes_done"],
            )
            self.count += 1
            if self.count >= MAX_SAMPLES:
                self._thin()
        except DatabaseError:
            logger.debug("job %s: speed sample not stored", self.job_id, exc_info=True)
            return False
        return True

    def _thin(self) -> None:
        ids = list(JobSample.objects.filter(job_id=self.job_id).order_by("at", "pk").values_list("pk", flat=True))
        JobSample.objects.filter(pk__in=ids[1::2]).delete()
        self.count = len(ids) - len(ids[1::2])
        self.every *= 2


def samples_of(job_id: int, *, limit: int = MAX_SAMPLES) -> list[tuple[float, float]]:
    """A job's samples, oldest first, for its chart: (epoch seconds, bytes per second) pairs, as stored
    (the page renders up to 1,500 of them: no per-point dict or rounding)."""
    return list(JobSample.objects.filter(job_id=job_id).order_by("at").values_list("at", "speed")[:limit])
