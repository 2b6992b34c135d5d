"""The stack runner's supervision, with cheap stand-ins for Redis, daphne and the worker."""

from __future__ import annotations

import subprocess
import sys

from rvweb.stack import Child, Supervisor
from tests.conftest import wait_for


def _command(code: str) -> Child:
    return Child(code, lambda: subprocess.Popen([sys.executable, "-c", code]))


def test_a_child_that_dies_is_restarted_and_the_others_are_left_alone():
    said: list[str] = []
    crashing, steady = _command("raise SystemExit(3)"), _command("import time; time.sleep(60)")
    supervisor = Supervisor([crashing, steady], said.append, first_backoff=0.01)
    supervisor.start_all()
    steady_pid = steady.process.pid
    try:
        wait_for(lambda: (supervisor.poll(), supervisor.restarts >= 2)[1], timeout=20, what="two restarts")
    finally:
        supervisor.stop_all()

    assert steady.process.pid == steady_pid
    assert any("exited with code 3" in line and "restarting in" in line for line in said)
    assert any(line.startswith("raise SystemExit(3) restarted (pid ") for line in said)


def test_restarts_back_off_up_to_a_ceiling():
    crashing = _command("raise SystemExit(1)")
    supervisor = Supervisor([crashing], lambda line: None, first_backoff=0.01, max_backoff=0.04)
    supervisor.start_all()
    backoffs: list[float] = []

    def restarted_five_times() -> bool:
        before = crashing.restart_at
        supervisor.poll()
        if crashing.restart_at is not None and crashing.restart_at != before:
            backoffs.append(crashing.backoff)
        return len(backoffs) >= 5

    try:
        wait_for(restarted_five_times, timeout=20, interval=0.005, what="five restarts")
    finally:
        supervisor.stop_all()

    assert backoffs[:5] == [0.01, 0.02, 0.04, 0.04, 0.04]


def test_a_child_that_cannot_start_is_tried_again_later():
    attempts: list[int] = []

    def start() -> subprocess.Popen[bytes]:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("embedded redis did not answer")
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    child = Child("embedded redis", start, stop_last=True)
    said: list[str] = []
    supervisor = Supervisor([child], said.append, first_backoff=0.01)
    supervisor.start_all()
    try:
        wait_for(lambda: (supervisor.poll(), child.process is not None)[1], timeout=10, what="a third attempt")
        assert child.process.poll() is None
    finally:
        supervisor.stop_all()

    assert len(attempts) == 3
    assert said[0] == "embedded redis did not start (embedded redis did not answer); trying again in 0s"


def test_stopping_ends_every_child_and_redis_only_after_the_others(tmp_path):
    seen = tmp_path / "redis-alive-when-web-stopped"
    redis = Child("redis", lambda: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]), stop_last=True)
    # The web server stand-in notes, as it is being stopped, whether Redis is still there.
    web_code = (
        "import os, signal, sys, time\n"
        "def stop(*args):\n"
        "    try:\n"
        "        os.kill({pid}, 0); alive = 'yes'\n"
        "    except OSError:\n"
        "        alive = 'no'\n"
        "    open({path!r}, 'w').write(alive); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "open({path!r} + '.ready', 'w').close()\n"
        "time.sleep(60)\n"
    )
    web = Child(
        "web",
        lambda: subprocess.Popen([sys.executable, "-c", web_code.format(pid=redis.process.pid, path=str(seen))]),
    )
    supervisor = Supervisor([redis, web], lambda line: None)
    supervisor.start_all()
    wait_for(lambda: (tmp_path / "redis-alive-when-web-stopped.ready").exists(), timeout=20, what="the web stand-in")

    supervisor.stop_all()

    assert redis.process.poll() is not None and web.process.poll() is not None
    assert seen.read_text() == "yes"
