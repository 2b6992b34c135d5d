"""Runs inside the throwaway venv that holds the Renderbus SDK; times one SDK call and prints the result as JSON.

Standalone on purpose (the venv has only the SDK): `python sdk_child.py versions`,
`python sdk_child.py cut '{"upload": ..., "size": ..., "target": ...}'`,
`python sdk_child.py append '{"upload": ..., "paths": [...]}'`.
"""

from __future__ import annotations

import json
import sys
import time
from importlib import metadata


def main() -> None:
    command = sys.argv[1]
    if command == "versions":  # also proves that both functions import
        from rayvision_api.utils import append_to_upload
        from rayvision_sync.utils import cutting_upload

        print(json.dumps({name: metadata.version(name) for name in ("rayvision-sync", "rayvision-api")}))
        return
    spec = json.loads(sys.argv[2])
    if command == "cut":
        from rayvision_sync.utils import cutting_upload

        start = time.perf_counter()
        paths = cutting_upload(spec["upload"], spec["size"], spec["target"])
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "paths": paths}))
    elif command == "append":
        from rayvision_api.utils import append_to_upload

        start = time.perf_counter()
        append_to_upload(spec["paths"], spec["upload"])
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds}))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
