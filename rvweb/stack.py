"""The whole stack in one foreground process: embedded Redis (when REDIS_URL is unset), daphne and a
Celery worker, supervised together: a child that dies is restarted with backoff (each restart
logged), and Ctrl-C stops them all, the web server and the worker before Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rvweb.embedded_redis import EmbeddedRedis

_STOP_GRACE = 15.0
_FIRST_BACKOFF = 1.0
_MAX_BACKOFF = 30.0
_STABLE_AFTER = 60.0  # a child that ran this long starts again at the first backoff when it dies


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


def _terminate(processes: list[subprocess.Popen[bytes]]) -> None:
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


@dataclass
class Child:
    """One supervised process. `start` returns it running, or None when nothing needs supervising
    (an embedded Redis someone else already serves); it may raise when the process cannot start."""

    name: str
    start: Callable[[], subprocess.Popen[bytes] | None]
    stop_last: bool = False  # Redis: the others still need it while they stop
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = 0.0
    restart_at: float | None = None


@dataclass
class Supervisor:
    children: list[Child]
    say: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    first_backoff: float = _FIRST_BACKOFF
    max_backoff: float = _MAX_BACKOFF
    stable_after: float = _STABLE_AFTER
    restarts: int = field(default=0, init=False)

    def start_all(self) -> None:
        for child in self.children:
            self._start(child)

    def alive(self) -> bool:
        return all(c.process is None or c.process.poll() is None for c in self.children)

    def poll(self) -> None:
        """Restart what has died, each child after its own backoff: 1 s, 2 s, 4 s ... up to 30 s,
        back to 1 s once it has run for a minute."""
        now = self.clock()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self.restarts += 1
                    self._start(child)
                continue
            if child.process is None or child.process.poll() is None:
                continue
            ran_for = now - child.started_at
            child.backoff = (
                self.first_backoff
                if ran_for >= self.stable_after
                else min(self.max_backoff, (child.backoff * 2) or self.first_backoff)
            )
            child.restart_at = now + child.backoff
            code = child.process.returncode
            self.say(f"{child.name} exited with code {code} after {ran_for:.0f}s; restarting in {child.backoff:.0f}s")

    def stop_all(self) -> None:
        _terminate([c.process for c in self.children if c.process is not None and not c.stop_last])
        _terminate([c.process for c in self.children if c.process is not None and c.stop_last])

    def _start(self, child: Child) -> None:
        child.restart_at = None
        child.started_at = self.clock()
        try:
            child.process = child.start()
        except (OSError, RuntimeError) as exc:
            child.process = None
            child.backoff = min(self.max_backoff, (child.backoff * 2) or self.first_backoff)
            child.restart_at = self.clock() + child.backoff
            self.say(f"{child.name} did not start ({exc}); trying again in {child.backoff:.0f}s")
            return
        if child.process is not None and self.restarts:
            self.say(f"{child.name} restarted (pid {child.process.pid})")


def _redis_child(data_dir: Path, say: Callable[[str], None]) -> Child:
    def start() -> subprocess.Popen[bytes] | None:
        redis = EmbeddedRedis(data_dir).start()
        say(f"embedded redis on {redis.url}" + ("" if redis.process else " (already running; not supervised)"))
        return redis.process

    return Child("embedded redis", start, stop_last=True)


def _command(args: list[str]) -> Callable[[], subprocess.Popen[bytes]]:
    # Own sessions: Ctrl-C reaches only us, and we stop the children in order.
    return lambda: subprocess.Popen(args, start_new_session=True)


def run_stack(
    *, data_dir: Path, embedded_redis: bool, bind: str, port: int, queue: str, concurrency: int, say: Callable[[str], None]
) -> int:
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    daphne = [sys.executable, "-m", "daphne", "-b", bind, "-p", str(port), "rvweb.asgi:application"]
    # Gossip and mingle serve clusters of workers; here they would only be more broker consumers to
    # bring back after an outage. Riding out a broker restart is rvweb.kombu_fix's and settings' job.
    worker = [sys.executable, "-m", "celery", "-A", "rvweb", "worker", "-Q", queue, "-c", str(concurrency), "-l", "INFO",
              "--hostname", "rvweb@%h", "--without-gossip", "--without-mingle"]  # fmt: skip
    children = [_redis_child(data_dir, say)] if embedded_redis else []
    children += [Child("web server (daphne)", _command(daphne)), Child("worker (celery)", _command(worker))]
    supervisor = Supervisor(children, say)
    host = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind  # noqa: S104 - only mapping it to a URL
    url = f"http://{host}:{port}/"
    try:
        supervisor.start_all()
        if _wait_healthy(url + "healthz", alive=lambda: not stopping and supervisor.alive()):
            say("")
            say(f"rvweb is up: {url}")
            say("Log in as 'admin' with the password printed when the account was created (or RVWEB_ADMIN_PASSWORD).")
            say("Press Ctrl-C to stop.")
        elif not stopping:
            say(f"rvweb is not healthy yet; see {url}healthz and the logs above")
        while not stopping:
            supervisor.poll()
            time.sleep(0.5)
        return 0
    finally:
        say("stopping…")
        supervisor.stop_all()
        say("stopped.")
