"""Importing an upload.json through the service, the page, the API and the command: bad ones are refused whole."""

from __future__ import annotations

import html
import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.urls import reverse

from transfers import services, tasks
from transfers.engine.manifest import EntryProblem, ManifestInvalid
from transfers.models import AuditEvent, FarmAccount, Manifest, ManifestEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(team, make_user) -> Any:
    return make_user("artist", team=team, role="lead")


@pytest.fixture
def account(team, make_account) -> FarmAccount:
    return make_account(team, name="farm")


@pytest.fixture
def logged_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any) -> Any:
    """Runs the import_manifest task in this process once the request's transaction commits."""
    monkeypatch.setattr(tasks.import_manifest, "delay", lambda manifest_id: tasks.import_manifest(manifest_id))
    return lambda: django_capture_on_commit_callbacks(execute=True)


def _upload_json(*entries: tuple[str, str]) -> bytes:
    return json.dumps({"asset": [{"local": local, "server": server} for local, server in entries]}).encode()


def _good(allowed_dir: Path) -> bytes:
    """Three entries in a non-alphabetical order; the second names a file that does not exist."""
    (allowed_dir / "z.exr").write_bytes(b"z" * 10)
    (allowed_dir / "a.exr").write_bytes(b"a" * 3)
    return _upload_json(
        (str(allowed_dir / "z.exr"), "/D/z.exr"),
        (str(allowed_dir / "missing.exr"), "/D/missing.exr"),
        (str(allowed_dir / "a.exr"), "/D/a.exr"),
    )


def _climbing(allowed_dir: Path) -> bytes:
    """Entry 2's server path climbs out of the storage root."""
    (allowed_dir / "a.exr").write_bytes(b"a")
    return _upload_json((str(allowed_dir / "a.exr"), "/D/a.exr"), (str(allowed_dir / "a.exr"), "/D/../../etc/cron.d/x"))


def _import(data: bytes, account: FarmAccount, user: Any = None) -> Manifest:
    return services.manifest_import(name="shots", account=account, data=data, user=user)


def _refusal(data: bytes, account: FarmAccount) -> list[EntryProblem]:
    with pytest.raises(ManifestInvalid) as refused:
        _import(data, account)
    return refused.value.problems


# services.manifest_import


def test_manifest_import_refuses_a_server_path_with_dotdot_naming_the_entry(allowed_dir: Path, account: FarmAccount) -> None:
    assert _refusal(_climbing(allowed_dir), account) == [EntryProblem(2, "server path '/D/../../etc/cron.d/x' contains '..'")]


def test_manifest_import_refuses_a_local_path_outside_the_allowed_roots(
    allowed_dir: Path, account: FarmAccount, tmp_path: Path
) -> None:
    (allowed_dir / "a.exr").write_bytes(b"a")
    (tmp_path / "secret.txt").write_text("secret")
    data = _upload_json((str(allowed_dir / "a.exr"), "a.exr"), (str(tmp_path / "secret.txt"), "secret.txt"))

    problems = _refusal(data, account)

    assert [p.number for p in problems] == [2]
    assert problems[0].reason.startswith(f"local path '{tmp_path / 'secret.txt'}' is outside the allowed roots")


def test_manifest_import_refuses_a_file_that_is_not_json(account: FarmAccount) -> None:
    problems = _refusal(b"local,server\n/a,/b\n", account)

    assert [p.number for p in problems] == [0]
    assert problems[0].reason.startswith("not valid JSON")


def test_manifest_import_stores_nothing_when_it_refuses(allowed_dir: Path, account: FarmAccount) -> None:
    with pytest.raises(ManifestInvalid):
        _import(_climbing(allowed_dir), account)

    manifest_rows = AuditEvent.objects.filter(action__startswith="manifest.")  # the team's own rows aside
    assert (Manifest.objects.count(), ManifestEntry.objects.count(), manifest_rows.count()) == (0, 0, 0)


def test_manifest_import_stores_entries_in_file_order_with_their_sizes(allowed_dir: Path, account: FarmAccount) -> None:
    manifest = _import(_good(allowed_dir), account)

    rows = list(manifest.entries.order_by("number").values_list("number", "server", "size"))
    assert rows == [(1, "/D/z.exr", 10), (2, "/D/missing.exr", None), (3, "/D/a.exr", 3)]
    assert (manifest.entry_count, manifest.total_bytes) == (3, 13)


def test_manifest_import_counts_no_bytes_for_a_folder_entry(allowed_dir: Path, account: FarmAccount) -> None:
    # The worker fails a folder as not_a_file, so its directory-inode size must not swell total_bytes.
    (allowed_dir / "shots").mkdir()
    (allowed_dir / "a.exr").write_bytes(b"a" * 3)
    data = _upload_json((str(allowed_dir / "shots"), "/D/shots"), (str(allowed_dir / "a.exr"), "/D/a.exr"))

    manifest = _import(data, account)

    assert list(manifest.entries.order_by("number").values_list("size", flat=True)) == [None, 3]
    assert manifest.total_bytes == 3


def test_manifest_import_writes_an_audit_event(allowed_dir: Path, account: FarmAccount, user: Any) -> None:
    manifest = _import(_good(allowed_dir), account, user)

    event = AuditEvent.objects.filter(action__startswith="manifest.").get()
    assert (event.action, event.actor, event.target_type, event.target_id) == (
        "manifest.import",
        user,
        "Manifest",
        str(manifest.pk),
    )
    assert event.after == {"entries": 3}


# the manifest list page


def _post_page(client: Client, account: FarmAccount, data: bytes) -> Any:
    upload = SimpleUploadedFile("upload.json", data, content_type="application/json")
    return client.post(reverse("manifest-list"), {"name": "shots", "account": account.pk, "file": upload})


def test_import_page_shows_the_refusal_with_the_entry_number(
    logged_in: Client, allowed_dir: Path, account: FarmAccount, worker: Any
) -> None:
    with worker():
        response = _post_page(logged_in, account, _climbing(allowed_dir))

    manifest = Manifest.objects.get()
    assert response.status_code == 302
    page = logged_in.get(response.url)
    assert "entry 2: server path '/D/../../etc/cron.d/x' contains '..'" in html.unescape(page.content.decode())
    assert (manifest.state, manifest.entries.count()) == (Manifest.State.REFUSED, 0)


def test_import_page_stores_a_good_manifest_and_opens_it(
    logged_in: Client, allowed_dir: Path, account: FarmAccount, worker: Any
) -> None:
    with worker():
        response = _post_page(logged_in, account, _good(allowed_dir))

    manifest = Manifest.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("manifest-detail", args=[manifest.pk])
    assert (manifest.state, manifest.entry_count) == (Manifest.State.READY, 3)


def test_import_page_shows_progress_while_the_worker_imports(logged_in: Client, allowed_dir: Path, account: FarmAccount) -> None:
    response = _post_page(logged_in, account, _good(allowed_dir))  # no worker: it stays importing

    page = logged_in.get(response.url).content.decode()
    assert Manifest.objects.get().state == Manifest.State.IMPORTING
    assert 'id="manifest-import"' in page and "js/manifest.js" in page
    assert "<script>" not in page  # no inline script (a content security policy forbids it)


def test_import_page_sends_anonymous_visitors_to_the_login(client: Client, allowed_dir: Path, account: FarmAccount) -> None:
    response = _post_page(client, account, _good(allowed_dir))

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert not Manifest.objects.exists()


# the API


def _post_api(client: Client, account: FarmAccount, data: bytes) -> Any:
    upload = SimpleUploadedFile("upload.json", data, content_type="application/json")
    return client.post("/api/manifests/", {"name": "shots", "account": account.pk, "file": upload})


def test_api_refuses_a_bad_manifest_with_a_list_of_problems(
    logged_in: Client, allowed_dir: Path, account: FarmAccount, worker: Any
) -> None:
    with worker():
        response = _post_api(logged_in, account, _climbing(allowed_dir))

    assert (response.status_code, response.json()["state"]) == (202, "importing")
    body = logged_in.get(f"/api/manifests/{response.json()['id']}/").json()
    assert body["state"] == "refused"
    assert body["problems"] == [{"entry": 2, "reason": "server path '/D/../../etc/cron.d/x' contains '..'"}]
    assert not ManifestEntry.objects.exists()


def test_api_imports_a_good_manifest(logged_in: Client, allowed_dir: Path, account: FarmAccount, worker: Any) -> None:
    with worker():
        response = _post_api(logged_in, account, _good(allowed_dir))

    assert response.status_code == 202
    body = logged_in.get(f"/api/manifests/{response.json()['id']}/").json()
    assert (body["id"], body["state"], body["entry_count"], body["total_bytes"]) == (Manifest.objects.get().pk, "ready", 3, 13)
    assert body["entries_stored"] == 3


def test_api_answers_before_the_worker_has_read_the_file(logged_in: Client, allowed_dir: Path, account: FarmAccount) -> None:
    response = _post_api(logged_in, account, _good(allowed_dir))  # no worker runs

    manifest = Manifest.objects.get()
    assert response.status_code == 202
    assert (manifest.state, manifest.entries.count()) == (Manifest.State.IMPORTING, 0)
    assert services.manifest_spool_path(manifest_id=manifest.pk).read_bytes() == _good(allowed_dir)


@override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=16)
def test_api_moves_a_big_upload_into_place_without_reading_it(
    logged_in: Client, allowed_dir: Path, account: FarmAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the upload was read in the web process")

    def refuse_chunks(*args: object, **kwargs: object) -> Any:  # lazy, like the real one
        refuse()
        yield b""

    monkeypatch.setattr(TemporaryUploadedFile, "read", refuse)
    monkeypatch.setattr(TemporaryUploadedFile, "chunks", refuse_chunks)

    response = _post_api(logged_in, account, _good(allowed_dir))

    assert response.status_code == 202
    assert services.manifest_spool_path(manifest_id=response.json()["id"]).read_bytes() == _good(allowed_dir)


def test_api_refuses_anonymous_imports(client: Client, allowed_dir: Path, account: FarmAccount) -> None:
    response = _post_api(client, account, _good(allowed_dir))

    assert response.status_code == 401  # no credentials: 401, with WWW-Authenticate naming the token scheme
    assert not Manifest.objects.exists()


def test_api_refuses_anonymous_reads(client: Client) -> None:
    assert client.get("/api/manifests/").status_code == 401


# the import_manifest command


def test_import_manifest_command_names_the_entry_of_a_bad_file(allowed_dir: Path, account: FarmAccount, tmp_path: Path) -> None:
    path = tmp_path / "upload.json"
    path.write_bytes(_climbing(allowed_dir))

    with pytest.raises(CommandError, match=r"refused: entry 2: server path .* contains '\.\.'"):
        call_command("import_manifest", str(path), account="farm")

    assert not Manifest.objects.exists()


def test_import_manifest_command_imports_a_good_file(allowed_dir: Path, account: FarmAccount, tmp_path: Path) -> None:
    path = tmp_path / "upload.json"
    path.write_bytes(_good(allowed_dir))
    out = StringIO()

    call_command("import_manifest", str(path), account="farm", stdout=out)

    manifest = Manifest.objects.get()
    assert (manifest.name, manifest.account, manifest.entry_count) == ("upload.json", account, 3)
    assert out.getvalue().strip() == f"manifest {manifest.pk}: 3 entries, 13 bytes"


def test_import_manifest_command_refuses_an_unknown_account(allowed_dir: Path, account: FarmAccount, tmp_path: Path) -> None:
    path = tmp_path / "upload.json"
    path.write_bytes(_good(allowed_dir))

    with pytest.raises(CommandError, match="no farm account named 'elsewhere'"):
        call_command("import_manifest", str(path), account="elsewhere")
