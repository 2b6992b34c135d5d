"""SFTP and S3 farm accounts end to end: a lead adds one through the API, tests its connection (the SFTP
host key pinned on first use, a changed key refused), and a real worker uploads into it and
auto-downloads a render out of it, against a real sshd and a real S3 server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.conftest import wait_for
from tests.servers.s3server import S3Server
from tests.servers.sshd import Sshd
from transfers import jobs, services
from transfers.engine.paths import PARTIAL_SUFFIX
from transfers.farm.simulate import render_run, render_start
from transfers.farm_events import Actor
from transfers.models import AuditEvent, FarmAccount, TransferJob

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = Actor(user=None)


def _bucket(server: S3Server, name: str) -> str:
    """A new bucket, made through the S3 API (a folder made beside the server may not be seen at once)."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.key,
        aws_secret_access_key=server.secret,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=name)
    return name


@dataclass
class Farm:
    account: FarmAccount
    stored: Callable[[str, str], Path]  # (area, path in the area) -> where the server keeps its bytes on this disk


@pytest.fixture
def sftp_farm(sshd: Sshd, tmp_path: Path, make_account: Callable[..., FarmAccount]) -> Callable[..., Farm]:
    def make(*, pinned: bool = True, **fields: Any) -> Farm:
        base = tmp_path / f"farm-{uuid.uuid4().hex[:6]}"
        base.mkdir()
        storage = {"host": sshd.host, "port": sshd.port, "base_path": str(base), "host_key": sshd.host_key if pinned else ""}
        account = make_account(kind="sftp", access_id=sshd.username, access_key=sshd.private_key, storage=storage, **fields)
        return Farm(account, lambda area, path: base / area / path.lstrip("/"))

    return make


@pytest.fixture
def s3_farm(s3_server: S3Server, make_account: Callable[..., FarmAccount]) -> Callable[..., Farm]:
    def make(**fields: Any) -> Farm:
        bucket = _bucket(s3_server, f"farm-{uuid.uuid4().hex[:8]}")
        storage = {"endpoint_url": s3_server.endpoint_url, "bucket": bucket, "prefix": "studio/", "region": "us-east-1"}
        account = make_account(kind="s3", access_id=s3_server.key, access_key=s3_server.secret, storage=storage, **fields)
        return Farm(account, lambda area, path: s3_server.root / bucket / "studio" / area / path.lstrip("/"))

    return make


def _lead_client(make_user: Callable[..., Any], team: Any) -> tuple[Any, APIClient]:
    lead = make_user(f"lead-{uuid.uuid4().hex[:6]}", team=team, role="lead")
    client = APIClient()
    client.force_authenticate(lead)
    return lead, client


# --- the account: settings checked, test connection, the host key ------------------------------------------


def test_a_lead_adds_an_sftp_account_and_its_host_key_is_pinned_on_first_use(sshd, tmp_path, make_team, make_user):
    team = make_team()
    _, client = _lead_client(make_user, team)
    base = tmp_path / "nas"
    base.mkdir()
    given = {"name": "nas", "team": team.pk, "kind": "sftp", "access_id": sshd.username, "access_key": sshd.private_key}

    missing = client.post("/api/accounts/", {**given, "storage": {"port": 22}}, format="json")
    relative = client.post("/api/accounts/", {**given, "storage": {"host": sshd.host, "base_path": "farm"}}, format="json")
    unknown = client.post(
        "/api/accounts/", {**given, "storage": {"host": sshd.host, "base_path": "/x", "bucket": "b"}}, format="json"
    )
    assert missing.status_code == relative.status_code == unknown.status_code == 400
    assert "host" in json.dumps(missing.json()) and "absolute" in json.dumps(relative.json())
    assert "bucket" in json.dumps(unknown.json())

    storage = {"host": sshd.host, "port": sshd.port, "base_path": str(base)}
    made = client.post("/api/accounts/", {**given, "storage": storage}, format="json")
    assert made.status_code == 201, made.content
    shown = made.json()
    assert shown["storage"] == {**storage, "host_key": ""} or shown["storage"] == storage
    assert "PRIVATE KEY" not in made.content.decode() and shown["has_access_key"] is True

    first = client.post(f"/api/accounts/{shown['id']}/check/")
    assert first.status_code == 200 and first.json()["ok"], first.json()
    steps = {step["name"]: step["message"] for step in first.json()["steps"]}
    assert steps["host key"] == f"{sshd.fingerprint}, pinned now (first use): compare it with the server's"
    account = FarmAccount.objects.get(pk=shown["id"])
    assert account.storage["host_key"] == sshd.host_key
    pinned = AuditEvent.objects.get(action="account.host_key_pin")
    assert pinned.after == {"host_key": sshd.fingerprint, "first_use": True}
    assert all((base / area).is_dir() for area in ("input", "output", "config"))

    again = client.post(f"/api/accounts/{shown['id']}/check/")
    assert {s["name"]: s["message"] for s in again.json()["steps"]}["host key"] == f"{sshd.fingerprint}, as pinned"
    assert AuditEvent.objects.filter(action="account.host_key_pin").count() == 1
    assert "PRIVATE KEY" not in json.dumps(list(AuditEvent.objects.values_list("before", "after")))


def test_a_host_key_that_is_not_the_pinned_one_stops_the_connection(sftp_farm, make_user, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    farm = sftp_farm()
    farm.account.storage = {**farm.account.storage, "host_key": wrong}
    farm.account.save()
    _, client = _lead_client(make_user, farm.account.team)

    answer = client.post(f"/api/accounts/{farm.account.pk}/check/").json()

    assert not answer["ok"]
    failed = [step for step in answer["steps"] if not step["ok"]]
    assert "host key" in failed[0]["message"] and "SHA256:" in failed[0]["message"], failed
    assert FarmAccount.objects.get(pk=farm.account.pk).storage["host_key"] == wrong, "a mismatch never re-pins"


def test_a_closed_port_fails_the_check_naming_the_server(sftp_farm, make_user, closed_port):
    farm = sftp_farm()
    farm.account.storage = {**farm.account.storage, "port": closed_port}
    farm.account.save()
    _, client = _lead_client(make_user, farm.account.team)

    answer = client.post(f"/api/accounts/{farm.account.pk}/check/").json()

    assert not answer["ok"]
    assert f"127.0.0.1:{closed_port}" in json.dumps(answer["steps"])


def test_a_lead_adds_an_s3_account_and_tests_it(s3_server, make_team, make_user):
    team = make_team()
    _, client = _lead_client(make_user, team)
    bucket = _bucket(s3_server, f"b-{uuid.uuid4().hex[:8]}")
    given = {"name": "bucket", "team": team.pk, "kind": "s3", "access_id": s3_server.key, "access_key": s3_server.secret}

    bad = client.post("/api/accounts/", {**given, "storage": {"endpoint_url": "ftp://x", "bucket": bucket}}, format="json")
    assert bad.status_code == 400 and "endpoint_url" in json.dumps(bad.json())
    made = client.post(
        "/api/accounts/",
        {**given, "storage": {"endpoint_url": s3_server.endpoint_url, "bucket": bucket, "prefix": "/studio"}},
        format="json",
    )
    assert made.status_code == 201, made.content
    assert made.json()["storage"]["prefix"] == "studio/"
    assert s3_server.secret not in made.content.decode()

    answer = client.post(f"/api/accounts/{made.json()['id']}/check/").json()
    assert answer["ok"], answer

    FarmAccount.objects.filter(pk=made.json()["id"]).update(access_key="not-the-secret")
    refused = client.post(f"/api/accounts/{made.json()['id']}/check/").json()
    assert not refused["ok"] and "not-the-secret" not in json.dumps(refused)


# --- jobs through a real worker ----------------------------------------------------------------------------


def _files(root: Path, count: int) -> list[Path]:
    made = []
    for number in range(count):
        path = root / f"d{number % 3}" / f"f{number:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(1 + (number * 7919) % 300_000))
        made.append(path)
    return made


def _ended(job: TransferJob) -> TransferJob | None:
    job.refresh_from_db()
    return job if job.is_terminal else None


@pytest.fixture(params=["sftp", "s3"])
def farm(request: pytest.FixtureRequest) -> Farm:
    maker = request.getfixturevalue(f"{request.param}_farm")
    return maker()


def test_an_upload_lands_in_the_farm_byte_for_byte_and_a_second_one_sends_nothing(farm, celery_worker, allowed_dir, make_user):
    lead = make_user(f"lead-{uuid.uuid4().hex[:6]}", team=farm.account.team, role="lead")
    files = _files(allowed_dir / "shots", 40)
    document = {"asset": [{"local": str(p), "server": str(p)} for p in files]}
    manifest = services.manifest_import(name="shots", account=farm.account, data=json.dumps(document).encode(), user=lead)

    job = services.job_create_upload(manifest=manifest, user=lead)
    wait_for(lambda: _ended(job), timeout=120, what=f"job {job.pk} to end\n{celery_worker.log_tail()}")

    assert job.status == TransferJob.Status.COMPLETED, list(job.items.exclude(error="").values_list("error", flat=True)[:3])
    assert (job.files_done, job.files_failed) == (40, 0)
    assert job.route["transport"] == farm.account.kind and job.route["host"] == "127.0.0.1", job.route  # on the job page
    for path in files:
        assert farm.stored("input", str(path)).read_bytes() == path.read_bytes()

    again = services.job_create_upload(manifest=manifest, user=lead)
    wait_for(lambda: _ended(again), timeout=120, what=f"job {again.pk} to end\n{celery_worker.log_tail()}")
    assert again.status == TransferJob.Status.COMPLETED and again.files_skipped == 40, "the ledger skips what is there"


def test_a_render_on_the_farm_is_auto_downloaded_as_it_happens(farm, celery_worker, allowed_dir, make_user):
    lead = make_user(f"lead-{uuid.uuid4().hex[:6]}", team=farm.account.team, role="lead")
    plan = render_start(account=farm.account, scene=f"shot{uuid.uuid4().hex[:4]}", frames=6, actor=SYSTEM, interval=0.3)
    local = allowed_dir / "frames"
    job = jobs.job_create(
        kind="auto_download",
        account=farm.account,
        user=lead,
        options={"task_id_list": [plan.task_id], "local_path": str(local), "sleep_time": 1},
    )
    renderer = threading.Thread(target=render_run, args=(plan,), kwargs={"actor": SYSTEM}, daemon=True)
    renderer.start()
    renderer.join(120)
    wait_for(lambda: _ended(job), timeout=120, what=f"job {job.pk} to end\n{celery_worker.log_tail()}")

    assert job.status == TransferJob.Status.COMPLETED, job.error
    arrived = sorted(p for p in local.rglob("*") if p.is_file())
    assert len(arrived) == 6 and not [p for p in arrived if PARTIAL_SUFFIX in p.name]
    for path in arrived:
        name = path.relative_to(local).as_posix()
        assert path.read_bytes() == farm.stored("output", name).read_bytes()
