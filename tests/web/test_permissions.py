"""The permission matrix: every role against every page, API endpoint and action, form choice and websocket route.

Two teams, Blue and Red, each with a farm account (with an access key), a manifest of real files and a
running job with a failed item (so its page shows local paths). Every probe acts on Blue's objects; the
"other_lead" leads Red. Each cell of EXPECTED is what the role must get; besides, no response may carry
an access key (plain or encrypted), nor the local paths of a team the role is not in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages import get_messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpResponse
from django.test import Client

import transfers
from rvweb.asgi import application
from transfers import selectors, services
from transfers.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from transfers.fields import EncryptedTextField
from transfers.forms import ManifestImportForm
from transfers.models import AuditEvent, FarmAccount, Manifest, Membership, TransferItem, TransferJob

LOGIN = "login"  # sent to log in (pages), 401/403 "credentials not provided" (API), close 4401 (websocket)
HIDDEN = "hidden"  # 404, or a choice refused as not existing (the object is invisible to this role)
EMPTY = "empty"  # the list answers, without Blue's object in it
SEEN = "seen"  # the page, the API object, the list entry, the form choice or the websocket is there
REFUSED = "refused"  # visible but not the role's to act on: 403 (API), an error message (pages); nothing changed
DONE = "done"  # the action took effect

ROLES = ("anonymous", "no_team", "viewer", "member", "lead", "other_lead", "staff")

# fmt: off
EXPECTED: dict[str, tuple[str, ...]] = {
    #                                  anonymous  no_team  viewer   member   lead     other_lead  staff
    "page GET manifest list":          (LOGIN,    EMPTY,   SEEN,    SEEN,    SEEN,    EMPTY,      SEEN),
    "page GET manifest detail":        (LOGIN,    HIDDEN,  SEEN,    SEEN,    SEEN,    HIDDEN,     SEEN),
    "page POST manifest import":       (LOGIN,    REFUSED, REFUSED, REFUSED, DONE,    REFUSED,    DONE),
    "page POST manifest upload":       (LOGIN,    HIDDEN,  REFUSED, DONE,    DONE,    HIDDEN,     DONE),
    "page GET job list":               (LOGIN,    EMPTY,   SEEN,    SEEN,    SEEN,    EMPTY,      SEEN),
    "page GET job detail":             (LOGIN,    HIDDEN,  SEEN,    SEEN,    SEEN,    HIDDEN,     SEEN),
    "page POST job pause":             (LOGIN,    HIDDEN,  REFUSED, DONE,    DONE,    HIDDEN,     DONE),
    "page POST job resume":            (LOGIN,    HIDDEN,  REFUSED, DONE,    DONE,    HIDDEN,     DONE),
    "page POST job cancel":            (LOGIN,    HIDDEN,  REFUSED, DONE,    DONE,    HIDDEN,     DONE),
    "page POST job retry":             (LOGIN,    HIDDEN,  REFUSED, DONE,    DONE,    HIDDEN,     DONE),
    "page POST job speed":             (LOGIN,    HIDDEN,  REFUSED, DONE,    DONE,    HIDDEN,     DONE),
    "page GET job files":              (LOGIN,    HIDDEN,  SEEN,    SEEN,    SEEN,    HIDDEN,     SEEN),
    "page POST new job":               (LOGIN,    REFUSED, REFUSED, DONE,    DONE,    REFUSED,    DONE),
    "api GET accounts":                (LOGIN,    EMPTY,   SEEN,    SEEN,    SEEN,    EMPTY,      SEEN),
    "api GET account":                 (LOGIN,    HIDDEN,  SEEN,    SEEN,    SEEN,    HIDDEN,     SEEN),
    "api POST account create":         (LOGIN,    REFUSED, REFUSED, REFUSED, DONE,    HIDDEN,     DONE),
    "api PATCH account":               (LOGIN,    HIDDEN,  REFUSED, REFUSED, DONE,    HIDDEN,     DONE),
    "api GET manifests":               (LOGIN,    EMPTY,   SEEN,    SEEN,    SEEN,    EMPTY,      SEEN),
    "api GET manifest":                (LOGIN,    HIDDEN,  SEEN,    SEEN,    SEEN,    HIDDEN,     SEEN),
    "api POST manifest import":        (LOGIN,    HIDDEN,  REFUSED, REFUSED, DONE,    HIDDEN,     DONE),
    "api POST manifest upload_asset":  (LOGIN,    HIDDEN,  REFUSED, DONE,    DONE,    HIDDEN,     DONE),
    "api GET jobs":                    (LOGIN,    EMPTY,   SEEN,    SEEN,    SEEN,    EMPTY,      SEEN),
    "api GET job":                     (LOGIN,    HIDDEN,  SEEN,    SEEN,    SEEN,    HIDDEN,     SEEN),
    "api POST job pause":              (LOGIN,    HIDDEN,  REFUSED, DONE,    DONE,    HIDDEN,     DONE),
    "api POST job resume":             (LOGIN,    HIDDEN,  REFUSED, DONE,    DONE,    HIDDEN,     DONE),
    "api POST job cancel":             (LOGIN,    HIDDEN,  REFUSED, DONE,    DONE,    HIDDEN,     DONE),
    "api POST job retry":              (LOGIN,    HIDDEN,  REFUSED, DONE,    DONE,    HIDDEN,     DONE),
    "api POST job max_speed":          (LOGIN,    HIDDEN,  REFUSED, DONE,    DONE,    HIDDEN,     DONE),
    "form import account choices":     (EMPTY,    EMPTY,   EMPTY,   EMPTY,   SEEN,    EMPTY,      SEEN),
    "websocket job":                   (LOGIN,    HIDDEN,  SEEN,    SEEN,    SEEN,    HIDDEN,     SEEN),
}
# fmt: on

KEYS = {"Blue": "blue-access-key-5f0a9c", "Red": "red-access-key-77e1b2"}


@dataclass
class Side:
    team: Any
    account: FarmAccount
    manifest: Manifest
    job: TransferJob
    folder: str  # the folder of the team's local files: must never reach another team's user


@dataclass
class World:
    blue: Side
    red: Side
    users: dict[str, Any]
    secrets: list[bytes]  # every access key, plain and as stored


def _stored_key(account: FarmAccount) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT access_key FROM {FarmAccount._meta.db_table} WHERE id = %s", [account.pk])
        return str(cursor.fetchone()[0])


@pytest.fixture
def world(make_team, make_user, make_account, make_manifest, make_job) -> World:
    sides = {}
    for name in ("Blue", "Red"):
        team = make_team(name)
        account = make_account(team, name=f"{name} farm", access_id=f"id-{name}", access_key=KEYS[name])
        manifest = make_manifest(account, name=f"{name} shots")
        job = make_job(manifest=manifest, status=TransferJob.Status.RUNNING, files_total=manifest.entry_count)
        entry = manifest.entries.get(number=1)
        TransferItem.objects.create(
            job=job, number=1, local=entry.local, server=entry.server, size=entry.size, state="failed", error="boom"
        )
        folder = entry.local.rsplit("/", 1)[0]
        sides[name] = Side(team=team, account=account, manifest=manifest, job=job, folder=folder)
    blue, red = sides["Blue"], sides["Red"]
    users = {
        "anonymous": None,
        "no_team": make_user("nobody"),
        "viewer": make_user("vera", team=blue.team, role="viewer"),
        "member": make_user("max", team=blue.team, role="member"),
        "lead": make_user("lea", team=blue.team, role="lead"),
        "other_lead": make_user("otto", team=red.team, role="lead"),
        "staff": make_user("stella", staff=True),
    }
    secrets = [k.encode() for k in KEYS.values()] + [_stored_key(s.account).encode() for s in (blue, red)]
    return World(blue=blue, red=red, users=users, secrets=secrets)


def _client(world: World, role: str) -> Client:
    client = Client()
    if world.users[role] is not None:
        client.force_login(world.users[role])
    return client


# --- reading outcomes off responses ------------------------------------------------------------


def _sent_to_login(response: HttpResponse) -> bool:
    if response.status_code == 302 and response["Location"].startswith("/login/"):
        return True
    return response.status_code in (401, 403) and "credentials were not provided" in response.content.decode()


def _read(response: HttpResponse, present: bool | None = None) -> str:
    """A GET: present says whether Blue's object is in the answer (None: the answer is the object)."""
    if _sent_to_login(response):
        return LOGIN
    if response.status_code == 404:
        return HIDDEN
    assert response.status_code == 200, response.content[:500]
    return SEEN if present is None or present else EMPTY


def _acted(response: HttpResponse, changed: bool) -> str:
    """A POST: DONE when it changed the database; REFUSED only when refused for the role, not for another reason."""
    if _sent_to_login(response):
        return LOGIN
    if response.status_code == 404 or (response.status_code == 400 and "does not exist" in response.content.decode()):
        return HIDDEN
    if changed:
        return DONE
    if response.status_code == 403:
        return REFUSED
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    if response.status_code == 302 and any("you may not" in m for m in shown):
        return REFUSED
    text = response.content.decode()
    if response.status_code == 200 and ("you may not" in text or "Select a valid choice" in text):
        return REFUSED  # the page's import form: only the accounts the user manages are choices
    return f"unexpected {response.status_code}: {shown or response.content[:300]!r}"


def _job_status(job: TransferJob) -> str:
    return TransferJob.objects.values_list("status", flat=True).get(pk=job.pk)


def _job_action(world: World, client: Client, url: str, before: str) -> tuple[str, HttpResponse]:
    job = world.blue.job
    TransferJob.objects.filter(pk=job.pk).update(status=before)
    response = client.post(url, content_type="application/json") if url.startswith("/api/") else client.post(url)
    return _acted(response, _job_status(job) != before), response


def _manifest_file() -> SimpleUploadedFile:
    folder = settings.ALLOWED_LOCAL_ROOTS[0]
    return SimpleUploadedFile("upload.json", f'{{"asset": [{{"local": "{folder}/none.bin", "server": "/x"}}]}}'.encode())


# --- the probes: one per row of EXPECTED ---------------------------------------------------------

Probe = Callable[[World, Client], tuple[str, HttpResponse]]
PROBES: dict[str, Probe] = {}


def probe(name: str) -> Callable[[Probe], Probe]:
    def register(function: Probe) -> Probe:
        PROBES[name] = function
        return function

    return register


@probe("page GET manifest list")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get("/")
    return _read(response, world.blue.manifest.name in response.content.decode()), response


@probe("page GET manifest detail")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get(f"/manifests/{world.blue.manifest.pk}/")
    return _read(response), response


@probe("page POST manifest import")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    count = Manifest.objects.count()
    form = {"name": "new", "account": world.blue.account.pk, "transmit_type": "upload_json", "file": _manifest_file()}
    response = client.post("/", form)
    return _acted(response, Manifest.objects.count() > count), response


@probe("page POST manifest upload")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    count = TransferJob.objects.count()
    response = client.post(f"/manifests/{world.blue.manifest.pk}/upload", {"pool_size": "2"})
    return _acted(response, TransferJob.objects.count() > count), response


@probe("page GET job list")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get("/jobs/")
    return _read(response, f'href="/jobs/{world.blue.job.pk}/"' in response.content.decode()), response


@probe("page GET job files")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get(f"/jobs/{world.blue.job.pk}/items?state=failed")
    return _read(response), response


@probe("page POST new job")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    count = TransferJob.objects.count()
    form = {"kind": "upload_asset", "manifest": world.blue.manifest.pk, "pool_size": "2"}
    response = client.post("/jobs/new?kind=upload_asset", form)
    return _acted(response, TransferJob.objects.count() > count), response


@probe("page GET job detail")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get(f"/jobs/{world.blue.job.pk}/")
    return _read(response), response


for _action, _before in (("pause", "running"), ("resume", "paused"), ("cancel", "running"), ("retry", "failed")):

    def _page_action(world: World, client: Client, action: str = _action, before: str = _before) -> tuple[str, HttpResponse]:
        return _job_action(world, client, f"/jobs/{world.blue.job.pk}/{action}", before)

    def _api_action(world: World, client: Client, action: str = _action, before: str = _before) -> tuple[str, HttpResponse]:
        return _job_action(world, client, f"/api/jobs/{world.blue.job.pk}/{action}/", before)

    PROBES[f"page POST job {_action}"] = _page_action
    PROBES[f"api POST job {_action}"] = _api_action


@probe("page POST job speed")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.post(f"/jobs/{world.blue.job.pk}/speed", {"max_speed": "512"})
    world.blue.job.refresh_from_db()
    return _acted(response, world.blue.job.options.get("max_speed") == 512), response


@probe("api GET accounts")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get("/api/accounts/")
    ok = response.status_code == 200
    return _read(response, ok and world.blue.account.pk in [a["id"] for a in response.json()["results"]]), response


@probe("api GET account")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get(f"/api/accounts/{world.blue.account.pk}/")
    return _read(response), response


@probe("api POST account create")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    data = {"name": "new farm", "team": world.blue.team.pk, "access_id": "id", "access_key": "new-access-key-3141"}
    response = client.post("/api/accounts/", data, content_type="application/json")
    assert b"new-access-key-3141" not in response.content
    return _acted(response, FarmAccount.objects.filter(name="new farm").exists()), response


@probe("api PATCH account")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.patch(f"/api/accounts/{world.blue.account.pk}/", {"access_id": "id-new"}, content_type="application/json")
    changed = FarmAccount.objects.filter(pk=world.blue.account.pk, access_id="id-new").exists()
    return _acted(response, changed), response


@probe("api GET manifests")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get("/api/manifests/")
    ok = response.status_code == 200
    return _read(response, ok and world.blue.manifest.pk in [m["id"] for m in response.json()["results"]]), response


@probe("api GET manifest")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get(f"/api/manifests/{world.blue.manifest.pk}/")
    return _read(response), response


@probe("api POST manifest import")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    count = Manifest.objects.count()
    form = {"name": "new", "account": world.blue.account.pk, "transmit_type": "upload_json", "file": _manifest_file()}
    response = client.post("/api/manifests/", form)
    return _acted(response, Manifest.objects.count() > count), response


@probe("api POST manifest upload_asset")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    count = TransferJob.objects.count()
    response = client.post(f"/api/manifests/{world.blue.manifest.pk}/upload_asset/", {}, content_type="application/json")
    return _acted(response, TransferJob.objects.count() > count), response


@probe("api GET jobs")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get("/api/jobs/")
    ok = response.status_code == 200
    return _read(response, ok and world.blue.job.pk in [j["id"] for j in response.json()["results"]]), response


@probe("api GET job")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get(f"/api/jobs/{world.blue.job.pk}/")
    return _read(response), response


@probe("api POST job max_speed")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.post(f"/api/jobs/{world.blue.job.pk}/max_speed/", {"max_speed": 512}, content_type="application/json")
    world.blue.job.refresh_from_db()
    return _acted(response, world.blue.job.options.get("max_speed") == 512), response


HTTP_ROWS = [row for row in EXPECTED if row.split()[0] in ("page", "api")]


def test_the_table_has_a_probe_for_every_http_row_and_a_cell_for_every_role():
    assert set(PROBES) == set(HTTP_ROWS)
    assert all(len(cells) == len(ROLES) for cells in EXPECTED.values())


def _foreign_folders(world: World, role: str) -> list[str]:
    """Local folders this role must never be shown: the teams it is not in (staff are in every one)."""
    return {
        "anonymous": [world.blue.folder, world.red.folder],
        "no_team": [world.blue.folder, world.red.folder],
        "other_lead": [world.blue.folder],
        "staff": [],
    }.get(role, [world.red.folder])


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("row", HTTP_ROWS)
def test_http(world: World, row: str, role: str):
    outcome, response = PROBES[row](world, _client(world, role))

    assert outcome == EXPECTED[row][ROLES.index(role)]
    body = response.content
    assert not [secret for secret in world.secrets if secret in body], "an access key reached a response"
    assert not [folder for folder in _foreign_folders(world, role) if folder.encode() in body], "another team's local paths"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_form_import_account_choices(world: World, role: str):
    form = ManifestImportForm(user=world.users[role] or AnonymousUser())
    choices = list(form.fields["account"].queryset)

    assert (SEEN if world.blue.account in choices else EMPTY) == EXPECTED["form import account choices"][ROLES.index(role)]
    assert (world.red.account in choices) == (role in ("other_lead", "staff"))


# --- the websocket route ------------------------------------------------------------------------


@database_sync_to_async
def _session_cookie(user: Any) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ROLES)
async def test_websocket_job(world: World, role: str):
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if world.users[role] is not None:
        headers.append((b"cookie", await _session_cookie(world.users[role])))
    socket = WebsocketCommunicator(application, f"/ws/jobs/{world.blue.job.pk}/", headers=headers)

    accepted, code = await socket.connect(timeout=5)
    await socket.disconnect()

    outcome = SEEN if accepted else {CLOSE_UNAUTHENTICATED: LOGIN, CLOSE_FORBIDDEN: HIDDEN}.get(code, f"closed {code}")
    assert outcome == EXPECTED["websocket job"][ROLES.index(role)]


# --- around the matrix --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/", "/jobs/", "/api/accounts/", "/api/manifests/", "/api/jobs/", "JOB", "MANIFEST"])
def test_no_list_or_page_decrypts_an_access_key(world: World, url: str, monkeypatch):
    def refuse(*args: object) -> None:
        raise AssertionError("an access key was decrypted")

    monkeypatch.setattr(EncryptedTextField, "from_db_value", refuse)
    url = {"JOB": f"/jobs/{world.blue.job.pk}/", "MANIFEST": f"/manifests/{world.blue.manifest.pk}/"}.get(url, url)

    assert _client(world, "staff").get(url).status_code == 200


@pytest.mark.django_db
def test_the_account_list_still_says_whether_a_key_is_stored(world: World, make_account):
    make_account(world.blue.team, name="keyless")

    rows = _client(world, "viewer").get("/api/accounts/").json()["results"]

    assert {row["name"]: row["has_access_key"] for row in rows} == {"Blue farm": True, "keyless": False}


@pytest.mark.django_db
def test_a_lead_may_not_move_an_account_to_a_team_they_do_not_lead(world: World):
    response = _client(world, "lead").patch(
        f"/api/accounts/{world.blue.account.pk}/", {"team": world.red.team.pk}, content_type="application/json"
    )

    assert response.status_code == 400  # Red is not even a choice for Blue's lead
    assert FarmAccount.objects.get(pk=world.blue.account.pk).team == world.blue.team


@pytest.mark.django_db
def test_a_lead_of_two_teams_may_move_an_account_between_them(world: World):
    Membership.objects.create(user=world.users["lead"], team=world.red.team, role="viewer")
    client = _client(world, "lead")

    refused = client.patch(
        f"/api/accounts/{world.blue.account.pk}/", {"team": world.red.team.pk}, content_type="application/json"
    )
    Membership.objects.filter(user=world.users["lead"], team=world.red.team).update(role="lead")
    moved = client.patch(f"/api/accounts/{world.blue.account.pk}/", {"team": world.red.team.pk}, content_type="application/json")

    assert (refused.status_code, moved.status_code) == (403, 200)
    assert FarmAccount.objects.get(pk=world.blue.account.pk).team == world.red.team


@pytest.mark.django_db
def test_an_api_update_without_a_key_keeps_the_stored_key(world: World):
    response = _client(world, "lead").patch(
        f"/api/accounts/{world.blue.account.pk}/", {"access_id": "id-2", "access_key": ""}, content_type="application/json"
    )

    assert response.status_code == 200
    assert FarmAccount.objects.get(pk=world.blue.account.pk).access_key == KEYS["Blue"]
    audit = AuditEvent.objects.get(action="account.change")
    assert (audit.before, audit.after) == ({"access_id": "id-Blue"}, {"access_id": "id-2"})


@pytest.mark.django_db
def test_a_deactivated_member_sees_nothing(world: World):
    member = world.users["member"]
    member.is_active = False
    member.save()

    assert not selectors.jobs_for(member).exists()
    assert not selectors.manifests_for(member).exists()
    assert not selectors.accounts_for(member).exists()


@pytest.mark.django_db
def test_teams_for_a_role_means_that_role_or_a_higher_one(world: World, make_team):
    lead = world.users["lead"]
    Membership.objects.create(user=lead, team=make_team("Comp"), role="viewer")

    assert [t.name for t in selectors.teams_for(lead)] == ["Blue", "Comp"]
    assert [t.name for t in selectors.teams_for(lead, role="member")] == ["Blue"]
    assert [t.name for t in selectors.teams_for(world.users["staff"], role="lead")] == ["Blue", "Comp", "Red"]


@pytest.mark.django_db
def test_services_refuse_an_actor_whose_role_does_not_allow_the_action(world: World):
    with pytest.raises(PermissionDenied):
        services.job_pause(job=world.blue.job, user=world.users["viewer"])
    with pytest.raises(PermissionDenied):
        services.job_create_upload(manifest=world.blue.manifest, user=world.users["other_lead"])
    with pytest.raises(PermissionDenied):
        services.manifest_import(name="m", account=world.blue.account, data=b"{}", user=world.users["member"])

    assert _job_status(world.blue.job) == TransferJob.Status.RUNNING


@pytest.mark.parametrize("module", ["views.py", "api/views.py", "api/serializers.py", "forms.py", "consumers.py"])
def test_pages_api_forms_and_consumers_take_every_queryset_from_the_selectors(module: str):
    source = (Path(transfers.__file__).parent / module).read_text()

    assert ".objects." not in source


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_accounts_to_a_default_team():
    before, after = ("transfers", "0004_path_map_actor_name"), ("transfers", "0005_teams")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    executor.loader.project_state([before]).apps.get_model("transfers", "FarmAccount").objects.create(name="legacy")

    executor = MigrationExecutor(connection)
    executor.migrate([after])
    account = executor.loader.project_state([after]).apps.get_model("transfers", "FarmAccount").objects.get(name="legacy")
    team_name = account.team.name
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # back to the latest schema for the tests that follow

    assert team_name == "Default team"
