"""The SDK's options through the pages and commands: upload options, live speed limit, manifest tools."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from transfers import services
from transfers.models import AuditEvent, TransferJob


@pytest.fixture
def lead(team, make_user):
    return make_user("lead", team=team, role="lead")


@pytest.fixture
def manifest(lead, team, make_account, allowed_dir: Path):
    source = allowed_dir / "a.exr"
    source.write_bytes(b"frame")
    account = make_account(team, name="farm")
    data = json.dumps({"asset": [{"local": str(source), "server": "/D/a.exr"}]}).encode()
    return services.manifest_import(name="m", account=account, data=data, user=lead)


def test_upload_stores_the_chosen_sdk_options_on_the_job(client, lead, manifest):
    client.force_login(lead)
    with mock.patch("transfers.tasks.run_job.delay"):
        client.post(reverse("manifest-upload", args=[manifest.pk]), {"max_speed": "2048", "pool_size": "2", "is_db": "on"})

    options = TransferJob.objects.get().options
    assert (options["max_speed"], options["pool_size"], options["is_db"]) == (2048, 2, True)


def test_upload_refuses_a_negative_speed_and_creates_no_job(client, lead, manifest):
    client.force_login(lead)

    response = client.post(reverse("manifest-upload", args=[manifest.pk]), {"max_speed": "-5"}, follow=True)

    assert TransferJob.objects.count() == 0
    assert "max_speed" in response.content.decode()


def test_speed_change_on_a_running_job_is_stored_and_audited(client, lead, manifest):
    job = TransferJob.objects.create(
        account=manifest.account, manifest=manifest, created_by=lead, status="running", options={"pool_size": 4}
    )
    client.force_login(lead)

    client.post(reverse("job-speed", args=[job.pk]), {"max_speed": "512"})

    job.refresh_from_db()
    assert job.options == {"pool_size": 4, "max_speed": 512}
    event = AuditEvent.objects.get(action="job.max_speed")
    assert (event.before, event.after) == ({"max_speed": None}, {"max_speed": 512})


def test_an_empty_speed_removes_the_limit(client, lead, manifest):
    job = TransferJob.objects.create(account=manifest.account, created_by=lead, status="running", options={"max_speed": 100})
    client.force_login(lead)

    client.post(reverse("job-speed", args=[job.pk]), {"max_speed": ""})

    job.refresh_from_db()
    assert job.options == {}


def test_speed_change_is_refused_on_a_finished_job(client, lead, manifest):
    job = TransferJob.objects.create(account=manifest.account, created_by=lead, status="completed", options={})
    client.force_login(lead)

    client.post(reverse("job-speed", args=[job.pk]), {"max_speed": "512"})

    job.refresh_from_db()
    assert job.options == {}


def test_speed_change_on_another_teams_job_is_not_found(client, lead, make_account, make_user):
    other_account = make_account()
    other = make_user("other", team=other_account.team, role="lead")
    job = TransferJob.objects.create(account=other_account, created_by=other, status="running", options={})
    client.force_login(lead)

    response = client.post(reverse("job-speed", args=[job.pk]), {"max_speed": "512"})

    assert response.status_code == 404


def test_cutting_upload_command_prints_the_chunk_paths(tmp_path: Path, capsys):
    upload = tmp_path / "upload.json"
    upload.write_text(json.dumps({"asset": [{"local": f"/s/{n}", "server": f"/s/{n}"} for n in range(5)]}))

    call_command("cutting_upload", str(upload), "--max-resources-number", "2")

    assert capsys.readouterr().out.split() == [str(tmp_path / f"upload_{n}.json") for n in (1, 2, 3)]


def test_cutting_upload_command_explains_a_bad_size(tmp_path: Path):
    upload = tmp_path / "upload.json"
    upload.write_text(json.dumps({"asset": [{"local": "/s/a", "server": "/s/a"}]}))

    with pytest.raises(CommandError, match="at least 1"):
        call_command("cutting_upload", str(upload), "--max-resources-number", "0")


def test_append_to_upload_command_refuses_a_malformed_upload_json_and_keeps_it(tmp_path: Path):
    upload = tmp_path / "upload.json"
    upload.write_text('{"asset": [')
    (tmp_path / "f").write_text("x")

    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("append_to_upload", str(tmp_path / "f"), "--upload-path", str(upload))
    assert upload.read_text() == '{"asset": ['
