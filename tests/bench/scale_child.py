"""Benchmark 6's worker side, in its own process: import a manifest or run a job, then print what it took.

`python -m tests.bench.scale_child import|run ID` prints one JSON line: seconds, the process's peak
resident memory (VmHWM) and its resident memory once Django was loaded (VmRSS before the work).
"""

from __future__ import annotations

import json
import os
import sys
import time


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main(mode: str, ident: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rvweb.settings")
    import django

    django.setup()
    from transfers import execution, services

    loaded = _status_kib("VmRSS")
    started = time.perf_counter()
    if mode == "import":
        services.manifest_import_run(manifest_id=ident)
    else:
        execution.job_run(job_id=ident)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_kib": _status_kib("VmHWM"), "loaded_kib": loaded}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
