"""Redis killed and restarted empty in the middle of an upload: the worker lives on, the job resumes.

The worker is a real Celery process on a Redis server of this test's own (the session's Redis is
shared with other tests and must not be killed): the embedded one on its unix socket as broker; an
"external" one on a TCP port as broker (as under CI); and the machine's RabbitMQ as broker with the
embedded Redis only for leases and progress.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from kombu import Connection

from rvweb import embedded_redis
from rvweb.embedded_redis import EmbeddedRedis
from tests.conftest import ROOT, Service, _free_port, _subprocess_env, wait_for
from transfers import services, tasks
from transfers.models import FarmAccount, Membership, Team, TransferJob

pytestmark = pytest.mark.django_db(transaction=True)

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
FILES, SIZE = 8, 1_000_000
MAX_SPEED_KB = 350  # about 23 s for the whole job: the lease is lost (within two renewals) well before its end


class TcpRedis:
    """A Redis server on a free 127.0.0.1 port, started again on the same port after a kill."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> TcpRedis:
        args = [embedded_redis._server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(settings.DATA_DIR)]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, timeout=15, what=f"redis on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def own_redis(request) -> Iterator[EmbeddedRedis | TcpRedis]:
    if request.getfixturevalue("broker") == "external-redis":
        tcp = TcpRedis().start()
        yield tcp
        tcp.stop()
        return
    server = EmbeddedRedis(Path(settings.DATA_DIR) / "o" / uuid.uuid4().hex[:6]).start()
    yield server
    server.stop()


def _worker(redis: EmbeddedRedis | TcpRedis, broker: str, queue: str) -> Service:
    env = _subprocess_env() | {
        "REDIS_URL": redis.url,
        "BROKER_URL": broker,
        "RVWEB_QUEUE": queue,
        "RVWEB_RECOVER_EVERY": "1",
    }
    log = Path(settings.DATA_DIR) / "logs" / f"outage-worker-{uuid.uuid4().hex[:6]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "wb")  # noqa: SIM115 - the child owns it
    # The flags of the stack runner (rvweb/stack.py).
    args = [sys.executable, "-m", "celery", "-A", "rvweb", "worker", "-Q", queue, "-c", "2", "-l", "INFO",
            "--without-gossip", "--without-mingle", "--hostname", f"outage-{uuid.uuid4().hex[:6]}@%h"]  # fmt: skip
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    return Service(process=process, log=log)


def _slow_job(allowed_dir: Path) -> tuple[TransferJob, list[Path]]:
    user = get_user_model().objects.create_user("outage", password="pw-outage-123")
    team = Team.objects.create(name="outage-team")
    Membership.objects.create(user=user, team=team, role=Membership.Role.LEAD)
    account = FarmAccount.objects.create(name="outage-farm", team=team)
    files = []
    for number in range(FILES):
        path = allowed_dir / f"f{number}.bin"
        path.write_bytes(os.urandom(SIZE))
        files.append(path)
    document = {"asset": [{"local": str(p), "server": str(p)} for p in files]}
    manifest = services.manifest_import(name="outage", account=account, data=json.dumps(document).encode(), user=user)
    job = services.job_create_upload(manifest=manifest, user=user, options={"max_speed": MAX_SPEED_KB, "pool_size": 2})
    return job, files


def _job(pk: int) -> TransferJob:
    return TransferJob.objects.get(pk=pk)


@pytest.mark.parametrize("broker", ["redis", "external-redis", "rabbitmq"])
def test_killing_redis_mid_job_leaves_the_worker_alive_and_the_job_completes(broker, own_redis, allowed_dir, monkeypatch):
    # The job is created here but enqueued by the worker's own recovery, on the broker under test.
    monkeypatch.setattr(tasks.run_job, "delay", lambda *args: None)
    queue = f"rvweb-outage-{uuid.uuid4().hex[:8]}"
    broker_url = {"rabbitmq": RABBITMQ, "external-redis": own_redis.url}.get(broker) or embedded_redis.broker_url(
        own_redis.data_dir  # type: ignore[union-attr]
    )
    job, files = _slow_job(allowed_dir)
    worker = _worker(own_redis, broker_url, queue)
    try:
        wait_for(lambda: 0 < _job(job.pk).bytes_done < FILES * SIZE // 2, timeout=60, what=f"a first batch\n{worker.log_tail()}")

        own_redis.process.kill()  # type: ignore[union-attr]
        own_redis.process.wait()  # type: ignore[union-attr]
        wait_for(lambda: "not renewed" in worker.log.read_text(errors="replace"), timeout=30, what="the worker to notice")
        own_redis.start()  # a new, empty Redis on the same socket, as the stack runner would start

        wait_for(lambda: _job(job.pk).is_terminal, timeout=120, what=f"the job to end\n{worker.log_tail(80)}")
        assert worker.process.poll() is None, worker.log_tail(80)
    finally:
        worker.stop()
        if broker == "rabbitmq":
            with Connection(RABBITMQ) as conn:
                conn.default_channel.queue_delete(queue)

    finished = _job(job.pk)
    log = worker.log.read_text(errors="replace")
    assert (finished.status, finished.files_done, finished.files_failed) == (TransferJob.Status.COMPLETED, FILES, 0)
    # Left for recovery; or fenced off by the token of a run that took the job over while this one still
    # went on: under the whole suite the session's worker (another Redis, so another lease, but the same
    # database) recovers a job running unheld in its Redis, mid-run (tests/web/test_run_fence.py).
    assert "interrupted" in log and "left running for" in log, "the run must have been interrupted"
    assert "Unrecoverable error" not in log
    inbox = services.farm_storage(account=finished.account).area_root("input")
    for path in files:
        assert (inbox / str(path).lstrip("/")).read_bytes() == path.read_bytes()
    assert not list((inbox / str(allowed_dir).lstrip("/")).rglob("*.rvpart*")), "no temporary file may remain"
