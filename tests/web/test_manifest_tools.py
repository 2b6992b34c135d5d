"""Manifests in the browser: the folder picker, append (append_to_upload), browsing with filters, split
(cutting_upload) and dry run, through the services, the API and the pages; bad input and other teams."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from transfers import manifest_browse, manifest_work, services, tasks
from transfers.models import AuditEvent, FarmAccount, Manifest, ManifestEntry, ManifestWork, UploadRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(team: Any, make_user: Any) -> Any:
    return make_user("lead", team=team, role="lead")


@pytest.fixture
def account(team: Any, make_account: Any) -> FarmAccount:
    return make_account(team, name="farm")


@pytest.fixture
def as_lead(client: Client, lead: Any) -> Client:
    client.force_login(lead)
    return client


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any) -> Any:
    """Runs manifest works (and imports) in this process once the request's transaction commits."""
    monkeypatch.setattr(tasks.manifest_work, "delay", lambda work_id: tasks.manifest_work(work_id))
    monkeypatch.setattr(tasks.import_manifest, "delay", lambda manifest_id: tasks.import_manifest(manifest_id))
    return lambda: django_capture_on_commit_callbacks(execute=True)


def _tree(base: Path) -> Path:
    """shots/a.exr (3 B), shots/sub/b.exr (5 B), shots/c.png (7 B), and notes.txt beside shots."""
    (base / "shots" / "sub").mkdir(parents=True)
    (base / "shots" / "a.exr").write_bytes(b"a" * 3)
    (base / "shots" / "sub" / "b.exr").write_bytes(b"b" * 5)
    (base / "shots" / "c.png").write_bytes(b"c" * 7)
    (base / "notes.txt").write_bytes(b"n")
    return base


def _append(client: Client, worker: Any, url: str, payload: dict[str, Any]) -> Any:
    with worker():
        response = client.post(url, payload, content_type="application/json")
    return response


def _built(as_lead: Client, worker: Any, account: FarmAccount, paths: list[str], name: str = "built") -> Manifest:
    response = _append(as_lead, worker, "/api/manifests/append/", {"paths": paths, "name": name, "account": account.pk})
    assert response.status_code == 202, response.content
    return Manifest.objects.get(pk=response.json()["manifest"])


# --- the folder picker ---------------------------------------------------------------------------


def test_picker_lists_the_roots_then_one_folder(as_lead: Client, allowed_dir: Path) -> None:
    _tree(allowed_dir)

    roots = as_lead.get("/api/manifests/folders/").json()
    listed = as_lead.get("/api/manifests/folders/", {"path": str(allowed_dir)}).json()

    assert roots["roots"] == [str(allowed_dir.parent)]
    assert (listed["folders"], listed["files"]) == (["shots"], [{"name": "notes.txt", "size": 1}])
    assert listed["parent"] == str(allowed_dir.parent)


@pytest.mark.parametrize("path", ["/etc", "relative/path", "{root}/../..", "{root}/x/../../etc", "{root}/missing"])
def test_picker_refuses_paths_outside_the_roots_or_climbing(as_lead: Client, allowed_dir: Path, path: str) -> None:
    response = as_lead.get("/api/manifests/folders/", {"path": path.format(root=allowed_dir)})

    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_picker_shows_a_symlink_but_never_enters_it(as_lead: Client, allowed_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    (allowed_dir / "escape").symlink_to(tmp_path)

    listed = as_lead.get("/api/manifests/folders/", {"path": str(allowed_dir)}).json()
    entered = as_lead.get("/api/manifests/folders/", {"path": str(allowed_dir / "escape")})

    assert (listed["folders"], listed["others"]) == ([], ["escape"])
    assert entered.status_code == 400
    assert "symlink" in entered.json()["error"]["message"]


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_picker_is_for_leads(client: Client, team: Any, make_user: Any, allowed_dir: Path, role: str) -> None:
    client.force_login(make_user(team=team, role=role))

    assert client.get("/api/manifests/folders/", {"path": str(allowed_dir)}).status_code == 403


# --- append (append_to_upload) -------------------------------------------------------------------


def test_append_builds_a_new_manifest_walking_folders(
    as_lead: Client, worker: Any, allowed_dir: Path, account: FarmAccount
) -> None:
    _tree(allowed_dir)

    manifest = _built(as_lead, worker, account, [str(allowed_dir / "shots"), str(allowed_dir / "notes.txt")])

    manifest.refresh_from_db()
    rows = list(manifest.entries.order_by("number").values_list("number", "local", "server", "size"))
    shots = allowed_dir / "shots"
    assert rows == [
        (1, f"{shots}/a.exr", f"{shots}/a.exr", 3),
        (2, f"{shots}/c.png", f"{shots}/c.png", 7),
        (3, f"{shots}/sub/b.exr", f"{shots}/sub/b.exr", 5),
        (4, f"{allowed_dir}/notes.txt", f"{allowed_dir}/notes.txt", 1),
    ]
    assert (manifest.state, manifest.entry_count, manifest.total_bytes) == ("ready", 4, 16)
    actions = set(AuditEvent.objects.filter(target_id=str(manifest.pk)).values_list("action", flat=True))
    assert {"manifest.append", "manifest.append.finish"} <= actions


def test_append_skips_local_paths_already_in_the_manifest(
    as_lead: Client, worker: Any, allowed_dir: Path, account: FarmAccount
) -> None:
    _tree(allowed_dir)
    manifest = _built(as_lead, worker, account, [str(allowed_dir / "shots" / "a.exr")])

    response = _append(as_lead, worker, f"/api/manifests/{manifest.pk}/append/", {"paths": [str(allowed_dir / "shots")]})

    work = ManifestWork.objects.get(pk=response.json()["id"])
    assert (work.state, work.result["added"], work.result["duplicates"]) == ("done", 2, 1)
    assert list(manifest.entries.order_by("number").values_list("number", flat=True)) == [1, 2, 3]
    manifest.refresh_from_db()
    assert (manifest.entry_count, manifest.total_bytes) == (3, 15)


def test_append_does_not_follow_symlinks_met_in_a_walk(
    as_lead: Client, worker: Any, allowed_dir: Path, account: FarmAccount, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    (allowed_dir / "shots").mkdir()
    (allowed_dir / "shots" / "a.exr").write_bytes(b"a")
    (allowed_dir / "shots" / "outside").symlink_to(tmp_path)
    (allowed_dir / "shots" / "secret.txt").symlink_to(tmp_path / "secret.txt")

    manifest = _built(as_lead, worker, account, [str(allowed_dir / "shots")])

    assert list(manifest.entries.values_list("local", flat=True)) == [str(allowed_dir / "shots" / "a.exr")]
    assert manifest.works.get().result["skipped"] == 1  # the file symlink; the folder one is not walked into


def test_append_refuses_a_folder_swapped_for_a_symlink_after_it_was_checked(
    as_lead: Client, allowed_dir: Path, account: FarmAccount, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    (allowed_dir / "shots").mkdir()
    (allowed_dir / "shots" / "a.exr").write_bytes(b"a")
    monkeypatch.setattr(tasks.manifest_work, "delay", lambda work_id: None)  # the worker runs later
    response = as_lead.post(
        "/api/manifests/append/",
        {"paths": [str(allowed_dir / "shots")], "name": "swap", "account": account.pk},
        content_type="application/json",
    )
    assert response.status_code == 202
    (allowed_dir / "shots" / "a.exr").unlink()
    (allowed_dir / "shots").rmdir()
    (allowed_dir / "shots").symlink_to(tmp_path)  # swapped between the check and the walk

    manifest_work.work_run(work_id=response.json()["id"])

    manifest = Manifest.objects.get(pk=response.json()["manifest"])
    assert manifest.state == "refused"
    assert ManifestEntry.objects.filter(manifest=manifest).count() == 0
    assert "symlink" in manifest.works.get().result["problems"][0]


@pytest.mark.parametrize(
    "paths",
    [["/etc/passwd"], ["relative"], ["{root}/../../etc/passwd"], ["{root}/missing"], [], ["{root}/\x00x"], "{root}"],
)
def test_append_refuses_bad_paths_with_a_message(as_lead: Client, allowed_dir: Path, account: FarmAccount, paths: Any) -> None:
    given = paths.format(root=allowed_dir) if isinstance(paths, str) else [p.format(root=allowed_dir) for p in paths]

    response = as_lead.post(
        "/api/manifests/append/", {"paths": given, "name": "bad", "account": account.pk}, content_type="application/json"
    )

    assert response.status_code == 400
    assert Manifest.objects.count() == 0


def test_append_refuses_a_symlinked_path(as_lead: Client, allowed_dir: Path, account: FarmAccount, tmp_path: Path) -> None:
    (allowed_dir / "link").symlink_to(tmp_path)

    response = as_lead.post(
        "/api/manifests/append/",
        {"paths": [str(allowed_dir / "link")], "name": "bad", "account": account.pk},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "symlink" in response.json()["error"]["message"]


def test_append_needs_a_manifest_or_a_name_and_account(as_lead: Client, allowed_dir: Path, account: FarmAccount) -> None:
    (allowed_dir / "a").write_bytes(b"a")

    no_target = as_lead.post("/api/manifests/append/", {"paths": [str(allowed_dir / "a")]}, content_type="application/json")
    no_name = as_lead.post(
        "/api/manifests/append/", {"paths": [str(allowed_dir / "a")], "account": account.pk}, content_type="application/json"
    )

    assert (no_target.status_code, no_name.status_code) == (400, 400)


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_append_and_split_are_for_leads(
    client: Client, team: Any, make_user: Any, account: FarmAccount, make_manifest: Any, allowed_dir: Path, role: str
) -> None:
    manifest = make_manifest(account, files=4)
    (allowed_dir / "a").write_bytes(b"a")
    client.force_login(make_user(team=team, role=role))

    browse = client.get(f"/api/manifests/{manifest.pk}/entries/")
    append = client.post(
        f"/api/manifests/{manifest.pk}/append/", {"paths": [str(allowed_dir / "a")]}, content_type="application/json"
    )
    split = client.post(f"/api/manifests/{manifest.pk}/split/", {"max_resources_number": 2}, content_type="application/json")

    assert (browse.status_code, append.status_code, split.status_code) == (200, 403, 403)
    assert ManifestWork.objects.count() == 0


def test_another_teams_manifest_is_not_found(as_lead: Client, make_account: Any, make_manifest: Any, allowed_dir: Path) -> None:
    other = make_manifest(make_account(name="theirs"), files=2)
    (allowed_dir / "a").write_bytes(b"a")

    answers = [
        as_lead.get(f"/api/manifests/{other.pk}/entries/").status_code,
        as_lead.get(f"/api/manifests/{other.pk}/works/").status_code,
        as_lead.post(
            f"/api/manifests/{other.pk}/split/", {"max_resources_number": 1}, content_type="application/json"
        ).status_code,
        as_lead.post(f"/api/manifests/{other.pk}/dry-run/").status_code,
        as_lead.post(
            f"/api/manifests/{other.pk}/append/", {"paths": [str(allowed_dir / "a")]}, content_type="application/json"
        ).status_code,
        as_lead.get(f"/manifests/{other.pk}/").status_code,
        as_lead.post(f"/manifests/{other.pk}/split", {"max_resources_number": 1}).status_code,
        as_lead.post(f"/manifests/{other.pk}/dry-run").status_code,
    ]
    into = as_lead.post(
        "/api/manifests/append/", {"paths": [str(allowed_dir / "a")], "manifest": other.pk}, content_type="application/json"
    )

    assert answers == [404] * 8
    assert into.status_code == 400  # not a manifest this user can name
    assert ManifestWork.objects.count() == 0


# --- browsing ------------------------------------------------------------------------------------


@pytest.fixture
def browsed(as_lead: Client, worker: Any, allowed_dir: Path, account: FarmAccount) -> Manifest:
    _tree(allowed_dir)
    return _built(as_lead, worker, account, [str(allowed_dir)])


def _numbers(client: Client, manifest: Manifest, **query: Any) -> list[int]:
    response = client.get(f"/api/manifests/{manifest.pk}/entries/", query)
    assert response.status_code == 200, response.content
    return [row["number"] for row in response.json()["results"]]


def test_browse_filters_by_search_folder_extension_and_size(as_lead: Client, browsed: Manifest, allowed_dir: Path) -> None:
    # 1 notes.txt (1 B), 2 shots/a.exr (3 B), 3 shots/c.png (7 B), 4 shots/sub/b.exr (5 B)
    assert _numbers(as_lead, browsed) == [1, 2, 3, 4]
    assert _numbers(as_lead, browsed, q="c.pn") == [3]
    assert _numbers(as_lead, browsed, folder=str(allowed_dir / "shots" / "sub")) == [4]
    assert _numbers(as_lead, browsed, folder=str(allowed_dir / "shots") + "/") == [2, 3, 4]
    assert _numbers(as_lead, browsed, ext="exr") == [2, 4]
    assert _numbers(as_lead, browsed, ext=".png") == [3]
    assert _numbers(as_lead, browsed, size_min=3, size_max=5) == [2, 4]


def test_browse_filters_by_the_ledger(as_lead: Client, browsed: Manifest, allowed_dir: Path) -> None:
    server = str(allowed_dir / "shots" / "a.exr").lstrip("/")
    UploadRecord.objects.create(account=browsed.account, area="input", server=server, local="x", size=3, mtime_ns=1, checksum="")
    changed = str(allowed_dir / "shots" / "c.png").lstrip("/")
    UploadRecord.objects.create(
        account=browsed.account, area="input", server=changed, local="x", size=99, mtime_ns=1, checksum=""
    )

    assert _numbers(as_lead, browsed, uploaded="yes") == [2]
    assert _numbers(as_lead, browsed, uploaded="no") == [1, 3, 4]


def test_browse_pages_by_keyset_forwards_and_back(as_lead: Client, browsed: Manifest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_browse, "PAGE", 3)
    url = f"/api/manifests/{browsed.pk}/entries/"

    first = as_lead.get(url).json()
    second = as_lead.get(url, {"after": first["next"]}).json()
    back = as_lead.get(url, {"before": second["previous"]}).json()

    assert ([r["number"] for r in first["results"]], first["next"], first["previous"]) == ([1, 2, 3], 3, None)
    assert ([r["number"] for r in second["results"]], second["next"], second["previous"]) == ([4], None, 4)
    assert ([r["number"] for r in back["results"]], back["previous"]) == ([1, 2, 3], None)


def test_a_filtered_page_searches_a_window_and_says_so(
    as_lead: Client, browsed: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manifest_browse, "WINDOW", 2)
    url = f"/api/manifests/{browsed.pk}/entries/"

    first = as_lead.get(url, {"ext": "png"}).json()
    second = as_lead.get(url, {"ext": "png", "after": first["next"]}).json()

    assert (first["results"], first["next"], first["searched"]) == ([], 2, [1, 2])
    assert ([r["number"] for r in second["results"]], second["next"], second["searched"]) == ([3], None, [3, 4])


@pytest.mark.parametrize(
    "query",
    [
        {"ext": "../x"},
        {"ext": "a" * 40},
        {"size_min": "-1"},
        {"size_min": "abc"},
        {"size_min": "10", "size_max": "2"},
        {"size_max": str(2**64)},
        {"uploaded": "maybe"},
        {"after": "x"},
        {"after": "-5"},
        {"after": "1", "before": "3"},
        {"q": "x" * 600},
    ],
)
def test_browse_refuses_bad_filters_with_a_400_and_the_page_with_a_message(
    as_lead: Client, browsed: Manifest, query: dict[str, str]
) -> None:
    api = as_lead.get(f"/api/manifests/{browsed.pk}/entries/", query)
    page = as_lead.get(f"/manifests/{browsed.pk}/", query)

    assert api.status_code == 400
    assert api.json()
    assert page.status_code == 200
    assert 'id="filter-errors"' in page.content.decode()


def test_the_page_browses_with_filters(as_lead: Client, browsed: Manifest) -> None:
    page = as_lead.get(f"/manifests/{browsed.pk}/", {"ext": "png"}).content.decode()

    assert "c.png" in page
    assert "a.exr" not in page


# --- split (cutting_upload) ----------------------------------------------------------------------


@pytest.mark.parametrize(("entries", "size", "parts"), [(7, 3, [3, 3, 1]), (6, 3, [3, 3]), (5, 1, [1, 1, 1, 1, 1])])
def test_split_makes_parts_without_an_empty_one(
    as_lead: Client, worker: Any, account: FarmAccount, make_manifest: Any, entries: int, size: int, parts: list[int]
) -> None:
    original = make_manifest(account, files=entries, name="big")

    with worker():
        response = as_lead.post(
            f"/api/manifests/{original.pk}/split/", {"max_resources_number": size}, content_type="application/json"
        )

    assert response.status_code == 202
    work = ManifestWork.objects.get(pk=response.json()["id"])
    made = list(Manifest.objects.filter(split_from=original).order_by("pk"))
    assert (work.state, work.done, work.result["parts"]) == ("done", entries, [m.pk for m in made])
    assert [m.entry_count for m in made] == parts
    assert [m.name for m in made] == [f"big — part {i} of {len(parts)}" for i in range(1, len(parts) + 1)]
    assert all(m.state == "ready" for m in made)
    for part in made:
        assert list(part.entries.order_by("number").values_list("number", flat=True)) == list(range(1, part.entry_count + 1))
    locals_in_parts = [e for m in made for e in m.entries.order_by("number").values_list("local", flat=True)]
    assert locals_in_parts == list(original.entries.order_by("number").values_list("local", flat=True))
    assert sum(m.total_bytes for m in made) == original.total_bytes


@pytest.mark.parametrize("value", [0, -1, 5, 10**9, "two", None, True, 2**40])
def test_split_refuses_a_bad_max_resources_number(as_lead: Client, account: FarmAccount, make_manifest: Any, value: Any) -> None:
    original = make_manifest(account, files=5)

    response = as_lead.post(
        f"/api/manifests/{original.pk}/split/", {"max_resources_number": value}, content_type="application/json"
    )

    assert response.status_code == 400
    assert ManifestWork.objects.count() == 0


def test_split_page_form_and_its_errors(as_lead: Client, worker: Any, account: FarmAccount, make_manifest: Any) -> None:
    original = make_manifest(account, files=4)

    bad = as_lead.post(f"/manifests/{original.pk}/split", {"max_resources_number": "0"}, follow=True).content.decode()
    with worker():
        good = as_lead.post(f"/manifests/{original.pk}/split", {"max_resources_number": "3"}, follow=True)

    assert "Split:" in bad
    assert good.status_code == 200
    assert Manifest.objects.filter(split_from=original).count() == 2


def test_split_waits_for_an_append_in_progress(
    as_lead: Client, account: FarmAccount, make_manifest: Any, allowed_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks.manifest_work, "delay", lambda work_id: None)
    original = make_manifest(account, files=4)
    (allowed_dir / "a").write_bytes(b"a")
    as_lead.post(f"/api/manifests/{original.pk}/append/", {"paths": [str(allowed_dir / "a")]}, content_type="application/json")

    response = as_lead.post(f"/api/manifests/{original.pk}/split/", {"max_resources_number": 2}, content_type="application/json")

    assert response.status_code == 400
    assert "being added" in response.json()["error"]["message"]


# --- dry run ------------------------------------------------------------------------------------


def test_dry_run_counts_what_would_be_sent_and_what_the_ledger_has(
    as_lead: Client, worker: Any, allowed_dir: Path, account: FarmAccount
) -> None:
    (allowed_dir / "a.exr").write_bytes(b"a" * 3)
    (allowed_dir / "b.exr").write_bytes(b"b" * 5)
    data = json.dumps(
        {
            "asset": [
                {"local": str(allowed_dir / "a.exr"), "server": "/D/a.exr"},
                {"local": str(allowed_dir / "b.exr"), "server": "/D/b.exr"},
                {"local": str(allowed_dir / "gone.exr"), "server": "/D/gone.exr"},
            ]
        }
    ).encode()
    manifest = services.manifest_import(name="dry", account=account, data=data, user=None)
    info = os.stat(allowed_dir / "a.exr")
    UploadRecord.objects.create(
        account=account, area="input", server="D/a.exr", local="x", size=3, mtime_ns=info.st_mtime_ns, checksum=""
    )

    with worker():
        response = as_lead.post(f"/api/manifests/{manifest.pk}/dry-run/")

    result = ManifestWork.objects.get(pk=response.json()["id"]).result
    assert response.status_code == 202
    assert (result["files"], result["bytes"]) == (2, 8)
    assert (result["ledger_files"], result["ledger_bytes"], result["send_files"], result["send_bytes"]) == (1, 3, 1, 5)
    assert (result["missing"], result["missing_examples"]) == (1, [str(allowed_dir / "gone.exr")])
    page = as_lead.get(f"/manifests/{manifest.pk}/").content.decode()
    assert 'id="dry-send">1 files, 5' in page


def test_a_viewer_may_not_dry_run(client: Client, team: Any, make_user: Any, account: FarmAccount, make_manifest: Any) -> None:
    manifest = make_manifest(account, files=2)
    client.force_login(make_user(team=team, role="viewer"))

    api = client.post(f"/api/manifests/{manifest.pk}/dry-run/")
    page = client.post(f"/manifests/{manifest.pk}/dry-run", follow=True).content.decode()

    assert api.status_code == 403
    assert "Dry run: you may not run" in page
    assert ManifestWork.objects.count() == 0


# --- import from a path on the server ----------------------------------------------------------


def test_import_page_takes_a_file_on_the_server(as_lead: Client, worker: Any, allowed_dir: Path, account: FarmAccount) -> None:
    (allowed_dir / "a.exr").write_bytes(b"a")
    upload = allowed_dir / "upload.json"
    upload.write_text(json.dumps({"asset": [{"local": str(allowed_dir / "a.exr"), "server": "/D/a.exr"}]}))

    with worker():
        response = as_lead.post(
            "/", {"name": "from server", "account": account.pk, "transmit_type": "upload_json", "server_path": str(upload)}
        )

    manifest = Manifest.objects.get(name="from server")
    assert response.status_code == 302
    assert (manifest.state, manifest.entry_count) == ("ready", 1)


@pytest.mark.parametrize("where", ["/etc/passwd", "{root}/missing.json", "{root}", "{root}/link.json", "{root}/../x.json"])
def test_import_page_refuses_a_bad_server_path(
    as_lead: Client, allowed_dir: Path, account: FarmAccount, tmp_path: Path, where: str
) -> None:
    (tmp_path / "x.json").write_text('{"asset": []}')
    (allowed_dir / "link.json").symlink_to(tmp_path / "x.json")

    response = as_lead.post(
        "/", {"name": "bad", "account": account.pk, "transmit_type": "upload_json", "server_path": where.format(root=allowed_dir)}
    )

    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert Manifest.objects.count() == 0


def test_import_page_wants_a_file_or_a_server_path(as_lead: Client, account: FarmAccount) -> None:
    response = as_lead.post("/", {"name": "none", "account": account.pk, "transmit_type": "upload_json"})

    assert "Choose a file from this computer or name one on the server" in response.content.decode()


def test_a_malformed_file_on_the_server_is_refused_by_the_worker(
    as_lead: Client, worker: Any, allowed_dir: Path, account: FarmAccount
) -> None:
    (allowed_dir / "bad.json").write_text('{"asset": [{"local": 1}')

    with worker():
        as_lead.post(
            "/",
            {"name": "bad", "account": account.pk, "transmit_type": "upload_json", "server_path": str(allowed_dir / "bad.json")},
        )

    manifest = Manifest.objects.get(name="bad")
    assert manifest.state == "refused"
    assert manifest.problems


def test_recovery_leaves_built_and_split_manifests_to_their_works(
    account: FarmAccount, make_manifest: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = make_manifest(account, files=2)
    part = Manifest.objects.create(name="part", account=account, state="importing", split_from=original)
    built = Manifest.objects.create(name="built", account=account, state="importing")
    ManifestWork.objects.create(manifest=built, kind="append", state="running")
    queued = ManifestWork.objects.create(manifest=original, kind="dry_run")
    spooled = Manifest.objects.create(name="uploaded", account=account, state="importing")
    imports: list[int] = []
    works: list[int] = []
    monkeypatch.setattr(tasks.import_manifest, "delay", imports.append)
    monkeypatch.setattr(tasks.manifest_work, "delay", works.append)

    tasks.recover_imports()

    assert (imports, works) == ([spooled.pk], [queued.pk])
    assert part.pk not in imports


def test_api_imports_a_file_on_the_server_and_refuses_one_outside(
    as_lead: Client, worker: Any, allowed_dir: Path, account: FarmAccount
) -> None:
    (allowed_dir / "a.exr").write_bytes(b"a")
    upload = allowed_dir / "upload.json"
    upload.write_text(json.dumps({"asset": [{"local": str(allowed_dir / "a.exr"), "server": "/D/a.exr"}]}))

    with worker():
        good = as_lead.post("/api/manifests/", {"name": "s", "account": account.pk, "server_path": str(upload)})
    outside = as_lead.post("/api/manifests/", {"name": "o", "account": account.pk, "server_path": "/etc/passwd"})
    neither = as_lead.post("/api/manifests/", {"name": "n", "account": account.pk})

    assert good.status_code == 202
    assert Manifest.objects.get(pk=good.json()["id"]).state == "ready"
    assert (outside.status_code, neither.status_code) == (400, 400)
    assert "outside the allowed roots" in outside.json()["error"]["message"]


def test_append_refuses_a_manifest_that_is_not_ready(as_lead: Client, allowed_dir: Path, account: FarmAccount) -> None:
    refused = Manifest.objects.create(name="refused", account=account, state="refused")
    (allowed_dir / "a").write_bytes(b"a")

    response = as_lead.post(
        f"/api/manifests/{refused.pk}/append/", {"paths": [str(allowed_dir / "a")]}, content_type="application/json"
    )

    assert response.status_code == 400
    assert "wait until it is ready" in response.json()["error"]["message"]


def test_append_skips_a_file_name_that_is_not_text(as_lead: Client, worker: Any, allowed_dir: Path, account: FarmAccount) -> None:
    (allowed_dir / "shots").mkdir()
    (allowed_dir / "shots" / "a.exr").write_bytes(b"a")
    with open(os.path.join(os.fsencode(allowed_dir / "shots"), b"\xff.exr"), "wb") as handle:
        handle.write(b"x")

    manifest = _built(as_lead, worker, account, [str(allowed_dir / "shots")])

    assert list(manifest.entries.values_list("local", flat=True)) == [str(allowed_dir / "shots" / "a.exr")]
    result = manifest.works.get().result
    assert result["skipped"] == 1
    assert "not UTF-8 text" in result["problems"][0]


def test_picker_lists_a_name_that_is_not_text_without_failing(as_lead: Client, allowed_dir: Path) -> None:
    with open(os.path.join(os.fsencode(allowed_dir), b"\xff.exr"), "wb") as handle:
        handle.write(b"x")

    response = as_lead.get("/api/manifests/folders/", {"path": str(allowed_dir)})

    assert response.status_code == 200
    assert response.json()["others"] == ["\ufffd.exr (not UTF-8 text)"]
