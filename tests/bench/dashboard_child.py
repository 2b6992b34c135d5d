"""Benchmark 9's worker side, in its own process: run the given jobs at once, one thread each, as a
worker with that many slots would (execution.job_run, the code a Celery task runs, without the broker).

`python -m tests.bench.dashboard_child ID...` prints one JSON line: the seconds each job took.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time


def main(ids: list[int]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rvweb.settings")
    import django

    django.setup()
    from django.db import connection

    from transfers import execution

    took: dict[int, float] = {}

    def run(job_id: int) -> None:
        started = time.perf_counter()
        try:
            execution.job_run(job_id=job_id)
        finally:
            took[job_id] = time.perf_counter() - started
            connection.close()

    threads = [threading.Thread(target=run, args=(job_id,), name=f"job-{job_id}") for job_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"seconds": took}), flush=True)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]])
