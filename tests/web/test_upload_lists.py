"""Upload lists and Windows manifests: imported through the account's path mapping, sent by a real worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import wait_for
from transfers import services
from transfers.engine.manifest import ManifestInvalid
from transfers.models import FarmAccount, Manifest, TransferJob


@pytest.fixture
def lead(team, make_user):
    return make_user("lead", team=team, role="lead")


@pytest.fixture
def shots(allowed_dir: Path) -> Path:
    for name in ("a.exr", "sub/b.exr", "sub/deeper/c.exr"):
        path = allowed_dir / "shots" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
    return allowed_dir / "shots"


def test_an_upload_list_line_repeating_a_file_of_a_folder_line_is_refused(lead, team, shots: Path):
    account = FarmAccount.objects.create(name="farm", team=team)
    data = f"{shots}\n\n{shots / 'a.exr'}\r\n".encode()

    with pytest.raises(ManifestInvalid) as refused:
        services.manifest_import(name="m", account=account, data=data, user=lead, transmit_type="upload_list")

    # The folder already brought a.exr: the second line repeats it, and the refusal says where.
    assert "repeats entry 1" in str(refused.value)


def test_an_upload_list_imports_files_and_walked_folders(lead, team, shots: Path, allowed_dir: Path):
    account = FarmAccount.objects.create(name="farm", team=team)
    loose = allowed_dir / "loose.ma"
    loose.write_bytes(b"scene")

    manifest = services.manifest_import(
        name="m", account=account, data=f"{shots / 'sub'}\n{loose}\n".encode(), user=lead, transmit_type="upload_list"
    )

    entries = list(manifest.entries.values_list("local", "server"))
    assert entries == [
        (f"{shots}/sub/b.exr", f"{shots}/sub/b.exr"),
        (f"{shots}/sub/deeper/c.exr", f"{shots}/sub/deeper/c.exr"),
        (str(loose), str(loose)),
    ]
    assert manifest.transmit_type == Manifest.TransmitType.UPLOAD_LIST


def test_an_upload_list_names_the_line_of_a_missing_path(lead, team, allowed_dir: Path):
    account = FarmAccount.objects.create(name="farm", team=team)

    with pytest.raises(ManifestInvalid) as refused:
        services.manifest_import(
            name="m", account=account, data=f"\n{allowed_dir / 'gone'}\n".encode(), user=lead, transmit_type="upload_list"
        )

    assert str(refused.value) == f"line 2: '{allowed_dir / 'gone'}' does not exist"


def test_a_windows_manifest_without_a_mapping_is_refused_with_the_reason(lead, team):
    account = FarmAccount.objects.create(name="farm", team=team)
    data = json.dumps({"asset": [{"local": "D:\\shots\\a.exr", "server": "/D/shots/a.exr"}]}).encode()

    with pytest.raises(ManifestInvalid, match="no path mapping rule of this farm account covers it"):
        services.manifest_import(name="m", account=account, data=data, user=lead)


@pytest.mark.django_db(transaction=True)
def test_a_windows_manifest_is_read_through_the_mapping_and_sent(celery_worker, shots: Path, make_account, make_user):
    account = make_account(name="farm-w", path_map={"D:/": f"{shots.parent}/"})
    lead = make_user("lead-w", team=account.team, role="lead")
    data = json.dumps(
        {
            "asset": [
                {"local": "D:\\shots\\a.exr", "server": "/D/shots/a.exr"},
                {"local": "d:/shots/sub/b.exr", "server": "/D/shots/sub/b.exr"},
            ]
        }
    ).encode()
    manifest = services.manifest_import(name="m", account=account, data=data, user=lead)
    assert manifest.total_bytes == len(b"a.exr") + len(b"sub/b.exr")

    job = services.job_create_upload(manifest=manifest, user=lead)

    def ended() -> bool:
        job.refresh_from_db()
        return job.is_terminal

    wait_for(ended, timeout=60, what="the job to end")
    inbox = services.farm_storage(account=account).area_root("input")
    assert job.status == TransferJob.Status.COMPLETED
    assert (inbox / "D/shots/a.exr").read_bytes() == b"a.exr"
    assert (inbox / "D/shots/sub/b.exr").read_bytes() == b"sub/b.exr"
