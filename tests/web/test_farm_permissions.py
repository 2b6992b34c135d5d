"""The permission matrix of the farm pages and API: every role against Blue's farm account.

Two teams, Blue and Red, each with a local farm account holding a render task and an events token. Each
cell of EXPECTED is what the role must get; besides, no response may carry another team's task names, and
no response but the one that makes a token may carry a token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone

from transfers import selectors
from transfers.farm_events import Actor, farm_token_generate
from transfers.fields import EncryptedTextField
from transfers.models import FarmAccount, FarmEventToken, FarmFrame, FarmTask

LOGIN = "login"  # sent to log in (pages), 401/403 "credentials not provided" (API)
TOKEN = "token"  # 401: the farm events API wants the account's bearer token, whoever is logged in
HIDDEN = "hidden"  # 404
EMPTY = "empty"  # the list answers without Blue's account
SEEN = "seen"
REFUSED = "refused"  # 403 (API), an error message (pages); nothing changed
DONE = "done"

ROLES = ("anonymous", "no_team", "viewer", "member", "lead", "other_lead", "staff")

# fmt: off
EXPECTED: dict[str, tuple[str, ...]] = {
    #                                  anonymous  no_team  viewer   member   lead     other_lead  staff
    "page GET farm accounts":          (LOGIN,    EMPTY,   SEEN,    SEEN,    SEEN,    EMPTY,      SEEN),
    "page GET farm tasks":             (LOGIN,    HIDDEN,  SEEN,    SEEN,    SEEN,    HIDDEN,     SEEN),
    "page POST farm simulate":         (LOGIN,    HIDDEN,  REFUSED, REFUSED, DONE,    HIDDEN,     DONE),
    "page POST farm token":            (LOGIN,    HIDDEN,  REFUSED, REFUSED, DONE,    HIDDEN,     DONE),
    "page POST farm token revoke":     (LOGIN,    HIDDEN,  REFUSED, REFUSED, DONE,    HIDDEN,     DONE),
    "api POST farm token":             (LOGIN,    HIDDEN,  REFUSED, REFUSED, DONE,    HIDDEN,     DONE),
    "api GET farm tasks":              (LOGIN,    HIDDEN,  SEEN,    SEEN,    SEEN,    HIDDEN,     SEEN),
    "api GET farm task":               (LOGIN,    HIDDEN,  SEEN,    SEEN,    SEEN,    HIDDEN,     SEEN),
    "api POST farm events":            (TOKEN,    TOKEN,   TOKEN,   TOKEN,   TOKEN,   TOKEN,      TOKEN),
}
# fmt: on


@dataclass
class World:
    blue: FarmAccount
    red: FarmAccount
    users: dict[str, Any]
    tokens: dict[str, str]


@pytest.fixture
def world(make_team, make_user, make_account, make_farm_task, farm_root) -> World:
    accounts, tokens = {}, {}
    for name in ("Blue", "Red"):
        team = make_team(name)
        account = make_account(team, name=f"{name} farm")
        make_farm_task(account, task_id=100, scene=f"{name.lower()}-scene-7f3a", frames_expected=5)
        tokens[name] = farm_token_generate(account=account, actor=Actor())
        accounts[name] = account
    blue, red = accounts["Blue"], accounts["Red"]
    users = {
        "anonymous": None,
        "no_team": make_user("nobody"),
        "viewer": make_user("vera", team=blue.team, role="viewer"),
        "member": make_user("max", team=blue.team, role="member"),
        "lead": make_user("lea", team=blue.team, role="lead"),
        "other_lead": make_user("otto", team=red.team, role="lead"),
        "staff": make_user("stella", staff=True),
    }
    return World(blue=blue, red=red, users=users, tokens=tokens)


def _client(world: World, role: str) -> Client:
    client = Client()
    if world.users[role] is not None:
        client.force_login(world.users[role])
    return client


def _sent_to_login(response: HttpResponse) -> bool:
    if response.status_code == 302 and response["Location"].startswith("/login/"):
        return True
    return response.status_code in (401, 403) and "credentials were not provided" in response.content.decode()


def _read(response: HttpResponse, present: bool | None = None) -> str:
    if _sent_to_login(response):
        return LOGIN
    if response.status_code == 404:
        return HIDDEN
    assert response.status_code == 200, response.content[:500]
    return SEEN if present is None or present else EMPTY


def _acted(response: HttpResponse, changed: bool) -> str:
    if _sent_to_login(response):
        return LOGIN
    if response.status_code == 404:
        return HIDDEN
    if changed:
        return DONE
    if response.status_code == 403:
        return REFUSED
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    if response.status_code == 302 and any("you may not" in m for m in shown):
        return REFUSED
    return f"unexpected {response.status_code}: {shown or response.content[:300]!r}"


def _digest(world: World) -> str | None:
    return FarmEventToken.objects.filter(account=world.blue).values_list("digest", flat=True).first()


Probe = Callable[[World, Client], tuple[str, HttpResponse]]
PROBES: dict[str, Probe] = {}


def probe(name: str) -> Callable[[Probe], Probe]:
    def register(function: Probe) -> Probe:
        PROBES[name] = function
        return function

    return register


@probe("page GET farm accounts")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get("/farm/")
    return _read(response, f'href="/farm/{world.blue.pk}/"' in response.content.decode()), response


@probe("page GET farm tasks")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get(f"/farm/{world.blue.pk}/")
    outcome = _read(response)
    if outcome == SEEN:
        assert "blue-scene-7f3a" in response.content.decode() and "0/5" in response.content.decode()
    return outcome, response


@probe("page POST farm simulate")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    count = FarmTask.objects.filter(account=world.blue).count()
    form = {"scene": "sim", "frames": "3", "children": "0", "interval": "0.1"}
    response = client.post(f"/farm/{world.blue.pk}/simulate", form)
    return _acted(response, FarmTask.objects.filter(account=world.blue).count() > count), response


@probe("page POST farm token")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    before = _digest(world)
    response = client.post(f"/farm/{world.blue.pk}/token")
    return _acted(response, _digest(world) != before), response


@probe("page POST farm token revoke")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.post(f"/farm/{world.blue.pk}/token/revoke")
    return _acted(response, _digest(world) is None), response


@probe("api POST farm token")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    before = _digest(world)
    response = client.post(f"/api/farm/{world.blue.pk}/token/", content_type="application/json")
    return _acted(response, _digest(world) != before), response


@probe("api GET farm tasks")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get(f"/api/farm/{world.blue.pk}/tasks/")
    outcome = _read(response)
    if outcome == SEEN:
        assert [(t["task_id"], t["scene"], t["frames_done"], t["frames_expected"]) for t in response.json()["tasks"]] == [
            (100, "blue-scene-7f3a", 0, 5)
        ]
    return outcome, response


@probe("api GET farm task")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    response = client.get(f"/api/farm/{world.blue.pk}/tasks/100/")
    outcome = _read(response)
    if outcome == SEEN:
        assert (response.json()["task_id"], response.json()["outputs"]) == (100, [])
    return outcome, response


@probe("api POST farm events")
def _(world: World, client: Client) -> tuple[str, HttpResponse]:
    count = FarmTask.objects.count()
    response = client.post(
        f"/api/farm/{world.blue.pk}/events/", {"type": "task_created", "scene": "x"}, content_type="application/json"
    )
    assert FarmTask.objects.count() == count
    return (TOKEN if response.status_code == 401 else f"unexpected {response.status_code}"), response


def test_the_table_has_a_probe_for_every_row_and_a_cell_for_every_role():
    assert set(PROBES) == set(EXPECTED)
    assert all(len(cells) == len(ROLES) for cells in EXPECTED.values())


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("row", list(EXPECTED))
def test_http(world: World, row: str, role: str):
    outcome, response = PROBES[row](world, _client(world, role))

    assert outcome == EXPECTED[row][ROLES.index(role)]
    body = response.content.decode()
    assert not [token for token in world.tokens.values() if token in body], "an events token reached a response"
    if role not in ("other_lead", "staff"):
        assert "red-scene-7f3a" not in body, "another team's task"
    if role == "other_lead":
        assert "blue-scene-7f3a" not in body, "another team's task"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "member", "lead"])
def test_only_a_lead_is_offered_the_simulate_button_and_the_token(world: World, role: str):
    body = _client(world, role).get(f"/farm/{world.blue.pk}/").content.decode()

    assert ('id="simulate"' in body, 'id="token-generate"' in body) == (role == "lead", role == "lead")


@pytest.mark.django_db
def test_a_new_token_is_shown_once_to_the_lead_who_made_it(world: World):
    client = _client(world, "lead")

    made = client.post(f"/farm/{world.blue.pk}/token")
    token = FarmEventToken.objects.get(account=world.blue)
    shown = made.content.decode().split("<code>")[1].split("</code>")[0]
    later = client.get(f"/farm/{world.blue.pk}/")

    assert made.status_code == 200 and made["Cache-Control"] == "no-store"
    assert shown.startswith("rvf_") and shown not in later.content.decode()
    assert token.digest != shown
    status = (
        Client()
        .post(
            f"/api/farm/{world.blue.pk}/events/",
            {"type": "task_created", "scene": "x"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {shown}",
        )
        .status_code
    )
    assert status == 200


@pytest.mark.django_db
def test_the_api_gives_a_new_token_once(world: World):
    client = _client(world, "lead")

    answer = client.post(f"/api/farm/{world.blue.pk}/token/", content_type="application/json")
    listed = client.get(f"/api/accounts/{world.blue.pk}/")

    token = answer.json()["token"]
    assert answer.status_code == 200 and token.startswith("rvf_")
    assert token not in listed.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_the_selectors_give_the_tasks_and_frames_of_the_role_s_teams(world: World, role: str):
    for account in (world.blue, world.red):
        task = FarmTask.objects.get(account=account)
        FarmFrame.objects.create(task=task, path=f"{task.output_folder}/f.exr", size=1, finished_at=timezone.now())
    user = world.users[role]

    tasks = {t.account.name for t in selectors.farm_tasks_for(user)}
    frames = {f.task.account.name for f in selectors.farm_frames_for(user)}

    expected = {
        "anonymous": set(),
        "no_team": set(),
        "other_lead": {"Red farm"},
        "staff": {"Blue farm", "Red farm"},
    }.get(role, {"Blue farm"})
    assert tasks == frames == expected
    assert {t.frames_done for t in selectors.farm_tasks_for(user)} <= {1}
    managed = {t.account.name for t in selectors.farm_tasks_for(user, action="manage")}
    assert managed == (expected if role in ("lead", "other_lead", "staff") else set())


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/farm/", "BLUE"])
def test_no_farm_page_decrypts_an_access_key(world: World, url: str, monkeypatch):
    world.blue.access_key = "blue-access-key-1e2d"
    world.blue.save()

    def refuse(*args: object) -> None:
        raise AssertionError("an access key was decrypted")

    monkeypatch.setattr(EncryptedTextField, "from_db_value", refuse)
    url = f"/farm/{world.blue.pk}/" if url == "BLUE" else url

    assert _client(world, "staff").get(url).status_code == 200
