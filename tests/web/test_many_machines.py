"""Many machines, as deployed (issue 11, item 5): two daphne and two workers with different roots, on the
tests' database and Redis (PostgreSQL and Redis in CI). Each job runs on the worker that sees its files,
both together stay within one shared 20 MB/s budget, either daphne streams their progress, and either
answers the same metrics."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from websockets.sync.client import connect

from tests.conftest import Service, _free_port, _start, spawn_worker, wait_for
from transfers import services
from transfers.models import BandwidthBudget, TransferJob

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1 << 20
TOKEN = "many-machines-metrics"


def _daphne() -> Service:
    port = _free_port()
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "rvweb.asgi:application"]
    server = _start(args, "daphne", env={"RVWEB_METRICS_TOKEN": TOKEN}, own_group=True)
    server.url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if server.process.poll() is not None:
            raise RuntimeError(f"daphne exited:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_for(healthy, timeout=60, what="daphne /healthz")
    return server


def _files(folder: Path, count: int, size: int) -> list[Path]:
    folder.mkdir(parents=True)
    made = []
    for number in range(count):
        path = folder / f"f{number}.bin"
        path.write_bytes(os.urandom(size))
        made.append(path)
    return made


def _cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _metrics(server: Service) -> str:
    request = urllib.request.Request(server.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def _socket(server: Service, job_id: int, cookie: str) -> Any:
    url = server.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}/"
    return connect(url, origin=server.url, additional_headers={"Cookie": cookie}, open_timeout=10)  # type: ignore[arg-type]


def _ended_state(socket: Any) -> str:
    """The job's end as its websocket tells it (a state message with a terminal status); progress on the way."""
    with socket:
        progress = 0
        while True:
            message = json.loads(socket.recv(timeout=90))
            progress += message.get("type") == "job.progress"
            if message.get("type") == "job.state" and message.get("status") in ("completed", "completed_with_errors", "failed"):
                assert progress, "progress came through this daphne before the end"
                return str(message["status"])


def test_two_daphne_two_workers_routing_one_budget(celery_worker, make_account, make_user, tmp_path):
    rate_kbs = 20_000  # ~20.5 MB/s for both jobs together
    BandwidthBudget.objects.create(scope=BandwidthBudget.Scope.STUDIO, max_speed=rate_kbs)
    roots = {name: tmp_path / name for name in ("nas-a", "nas-b")}
    account = make_account(name="two machines")
    lead = make_user("machines-lead", team=account.team, role="lead")
    services_up: list[Service] = []
    try:
        front = [_daphne(), _daphne()]
        services_up += front
        names = {}
        for name, root in roots.items():
            names[name] = f"{name}-{uuid.uuid4().hex[:6]}"
            root_env = os.pathsep.join([*(str(r) for r in settings.ALLOWED_LOCAL_ROOTS), str(root)])
            worker_env = {"RVWEB_ALLOWED_LOCAL_ROOTS": root_env, "RVWEB_RECOVER_EVERY": "1"}
            services_up.append(spawn_worker(names[name], f"rvweb-{names[name]}", worker_env))
        workers = dict(zip(roots, services_up[2:], strict=True))
        manifests = {}
        for name, root in roots.items():
            files = _files(root / "shots", 3, 20 * MIB)
            document = {"asset": [{"local": str(p), "server": f"/{name}/{p.name}"} for p in files]}
            manifests[name] = services.manifest_import(name=name, account=account, data=json.dumps(document).encode(), user=lead)
        cookie = _cookie(lead)
        jobs = {name: services.job_create_upload(manifest=manifest, user=lead) for name, manifest in manifests.items()}
        # Each job followed on one daphne (progress travels worker -> Redis -> any daphne), both from the start.
        sockets = [_socket(front[1], jobs["nas-a"].pk, cookie), _socket(front[0], jobs["nas-b"].pk, cookie)]
        assert [_ended_state(socket) for socket in sockets] == ["completed", "completed"]
        wait_for(lambda: all(TransferJob.objects.get(pk=j.pk).is_terminal for j in jobs.values()), timeout=60, what="both jobs")
        texts = [_metrics(server) for server in front]
    finally:
        for service in services_up:
            service.stop()

    done = {name: TransferJob.objects.get(pk=job.pk) for name, job in jobs.items()}
    for name, job in done.items():
        other = "nas-b" if name == "nas-a" else "nas-a"
        assert job.status == TransferJob.Status.COMPLETED, job.error
        assert f"job {job.pk} runs on {names[name]}@" in workers[name].log.read_text(errors="replace")
        assert f"job {job.pk} runs on" not in workers[other].log.read_text(errors="replace")
    start = min(job.started_at for job in done.values())
    end = max(job.finished_at for job in done.values())
    rate = sum(job.bytes_sent for job in done.values()) / (end - start).total_seconds()
    budget = rate_kbs * 1024
    print(f"two workers, one budget: {rate / 1e6:.2f} MB/s of {budget / 1e6:.2f} MB/s ({rate / budget:.3f})")
    assert rate <= 1.10 * budget, f"together {rate / 1e6:.2f} MB/s, over the {budget / 1e6:.2f} MB/s budget"
    assert rate >= 0.5 * budget, f"together only {rate / 1e6:.2f} MB/s"
    for text in texts:
        assert 'rvweb_jobs{state="completed"}' in text and "rvweb_workers" in text
    assert [line for line in texts[0].splitlines() if line.startswith("rvweb_transfer_bytes_total")] == [
        line for line in texts[1].splitlines() if line.startswith("rvweb_transfer_bytes_total")
    ], "either daphne answers the same figures"
