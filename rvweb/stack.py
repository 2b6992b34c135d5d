"""The whole stack in one foreground process: embedded Redis (when REDIS_URL is unset), daphne and a
Celery worker, started together and stopped together on Ctrl-C or when any of them exits."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from rvweb.embedded_redis import EmbeddedRedis

_STOP_GRACE = 15.0


def _wait_healthy(url: str, *, alive: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()  # daphne closes sockets; celery does a warm shutdown
    deadline = time.monotonic() + _STOP_GRACE
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_stack(
    *, data_dir: Path, embedded_redis: bool, bind: str, port: int, queue: str, concurrency: int, say: Callable[[str], None]
) -> int:
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    redis = EmbeddedRedis(data_dir).start() if embedded_redis else None
    if redis is not None:
        say(f"embedded redis on {redis.url}")
    # Own sessions: Ctrl-C reaches only us, and we stop the children in order.
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", bind, "-p", str(port), "rvweb.asgi:application"], start_new_session=True
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "rvweb",
            "worker",
            "-Q",
            queue,
            "-c",
            str(concurrency),
            "-l",
            "INFO",
            "--hostname",
            "rvweb@%h",
        ],
        start_new_session=True,
    )
    children = [daphne, worker]
    host = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind  # noqa: S104 - only mapping it to a URL
    url = f"http://{host}:{port}/"
    try:
        if _wait_healthy(url + "healthz", alive=lambda: not stopping and all(p.poll() is None for p in children)):
            say("")
            say(f"rvweb is up: {url}")
            say("Log in as 'admin' with the password printed when the account was created (or RVWEB_ADMIN_PASSWORD).")
            say("Press Ctrl-C to stop.")
        elif not stopping:
            say(f"rvweb did not become healthy; see {url}healthz and the logs above")
        while not stopping and all(p.poll() is None for p in children):
            time.sleep(0.5)
        exited = [p for p in children if p.poll() is not None]
        if exited and not stopping:
            say(f"a process exited with code {exited[0].returncode}; stopping the stack")
            return exited[0].returncode or 1
        return 0
    finally:
        say("stopping…")
        _stop(children)
        if redis is not None:
            redis.stop()
        say("stopped.")
