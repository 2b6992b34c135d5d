"""The workers that are alive: each announces itself in Redis when it is ready and again every recovery
round (its roots, the transports it can run, its load), under a key that lapses when the heartbeats stop.

Read by the metrics (heartbeats) and by whoever needs to know which workers see which files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


def _lapse() -> int:
    """A worker is gone when it missed three recovery rounds (never less than 30 s)."""
    return max(30, 3 * int(settings.RECOVER_EVERY))


def _key(name: str) -> str:
    return f"{settings.KEY_PREFIX}:worker:{name}"


def transports() -> list[str]:
    """The transports this worker can run: the registered ones, and the vendor's transmitter where installed."""
    from transfers.engine.endpoints import TRANSPORTS
    from transfers.transmitter_install import transmitter_path

    found = sorted(TRANSPORTS)
    if transmitter_path() is not None:  # installed, RVWEB_TRANSMITTER, or on PATH: what a Fox run would use
        found.append("transmitter")
    return found


def describe(name: str, started: float) -> dict[str, Any]:
    return {
        "hostname": name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "roots": [str(root) for root in settings.ALLOWED_LOCAL_ROOTS],
        "transports": transports(),
        "queue": f"{settings.CELERY_TASK_DEFAULT_QUEUE}.w.{name}",
        "load": os.getloadavg()[0],
        "started": started,
        "beat": time.time(),
    }


def heartbeat(name: str, started: float) -> None:
    """Announce this worker (again); a Redis away is logged, never raised (the next round tries again)."""
    from transfers.locks import _client

    try:
        _client(settings.REDIS_URL).set(_key(name), json.dumps(describe(name, started)), ex=_lapse())
    except (RedisError, OSError) as exc:
        logger.warning("worker heartbeat not written (%s); trying again next round", type(exc).__name__)


def gone(name: str) -> None:
    from transfers.locks import _client

    with contextlib.suppress(RedisError, OSError):
        _client(settings.REDIS_URL).delete(_key(name))


def live() -> list[dict[str, Any]]:
    """The workers whose heartbeat has not lapsed, by name. Raises RedisError when Redis does not answer."""
    from transfers.locks import _client

    client = _client(settings.REDIS_URL)
    keys = sorted(client.scan_iter(match=_key("*"), count=500))
    found = []
    for key, raw in zip(keys, client.mget(keys) if keys else [], strict=True):
        entry = _sound(raw)
        if entry is None:
            if key not in _said:  # once a process: every placement and scrape reads it
                _said.add(key)
                logger.warning("worker entry %r is not one a worker writes; left out", key)
            continue
        found.append(entry)
    return sorted(found, key=lambda worker: str(worker["hostname"]))


_said: set[Any] = set()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)


def _sound(raw: Any) -> dict[str, Any] | None:
    """An announcement as `describe` writes it, or None: a broken or hostile entry (not JSON, not an object,
    no name, roots that are not absolute paths, "" read as "/") must neither claim folders nor break a reader."""
    try:
        entry = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(entry, dict):
        return None
    name, roots, transports = entry.get("hostname"), entry.get("roots"), entry.get("transports")
    if not isinstance(name, str) or not name or not isinstance(roots, list) or not isinstance(transports, list):
        return None
    if not all(isinstance(root, str) and root.startswith("/") and "\0" not in root for root in roots):
        return None
    if not all(isinstance(transport, str) for transport in transports):
        return None
    beat, started, load = _number(entry.get("beat", 0.0)), _number(entry.get("started", 0.0)), _number(entry.get("load", 0.0))
    if beat is None or started is None or load is None:
        return None
    queue = entry.get("queue")
    if not (isinstance(queue, str) and queue.endswith(f".w.{name}")):
        queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}.w.{name}"
    return {
        **entry,
        "roots": [os.path.normpath(root) for root in roots],
        # a worker's own queue, never the shared one (a job forwarded there would come back every round)
        "queue": queue,
        "beat": beat,
        "started": started,
        "load": load,
    }


def studio_roots() -> list[Path]:
    """The local roots of the whole studio: this process's and every live worker's. A manifest or a
    download folder is checked against these where it is recorded; each worker still opens files only
    beneath its own. Without Redis: this process's alone."""
    roots = [Path(root) for root in settings.ALLOWED_LOCAL_ROOTS]
    try:
        announced = [Path(root) for worker in live() for root in worker.get("roots", [])]
    except (RedisError, OSError):
        return roots
    return roots + [root for root in dict.fromkeys(announced) if root not in roots]
