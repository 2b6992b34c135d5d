"""Shared factories for the web tests: teams, users with a role, farm accounts, manifests and jobs.

Each factory is a fixture returning a function, so a test makes exactly the rows it needs. They ask for
`db`, which follows the test's own `django_db` mark (transactional or not).
In async tests wrap them: `await database_sync_to_async(make_user)(...)`.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import requests.adapters
from django.conf import settings
from django.contrib.auth import get_user_model

from tests.conftest import fake_fox_storage
from tests.fake_transmitter import FAKE_DIR
from tests.fox_farm import FoxFarmFake
from transfers import services, transmitter_install
from transfers.models import FarmAccount, FarmTask, Manifest, Membership, Team, TransferJob

_numbers = itertools.count(1)


@pytest.fixture
def make_team(db: None) -> Callable[..., Team]:
    def make(name: str | None = None) -> Team:
        return Team.objects.create(name=name or f"team-{next(_numbers)}")

    return make


@pytest.fixture
def make_user(db: None) -> Callable[..., Any]:
    """make_user("ann", team=t, role="lead") — role one of lead, member, viewer; no team: a user in no team.

    The user has no usable password unless `password` is given (tests log in with force_login)."""

    def make(
        username: str | None = None,
        *,
        team: Team | None = None,
        role: str = Membership.Role.MEMBER,
        staff: bool = False,
        superuser: bool = False,
        password: str | None = None,
    ) -> Any:
        username = username or f"user-{next(_numbers)}"
        users = get_user_model().objects
        create = users.create_superuser if superuser else users.create_user
        # No password unless asked for: hashing one costs a quarter of a second, and force_login needs none.
        user = create(username, password=password, is_staff=staff or superuser)
        if team is not None:
            Membership.objects.create(user=user, team=team, role=role)
        return user

    return make


@pytest.fixture
def team(make_team: Callable[..., Team]) -> Team:
    """The team of a test's `lead` and accounts, where a test needs only one."""
    return make_team("Studio")


@pytest.fixture
def make_account(make_team: Callable[..., Team]) -> Callable[..., FarmAccount]:
    """make_account(team, name="farm", **fields); without a team, the account gets a team of its own."""

    def make(team: Team | None = None, *, name: str | None = None, **fields: Any) -> FarmAccount:
        return FarmAccount.objects.create(name=name or f"farm-{next(_numbers)}", team=team or make_team(), **fields)

    return make


@pytest.fixture
def make_manifest(db: None) -> Callable[..., Manifest]:
    """make_manifest(account, files=3): real files under an allowed root, imported through services.manifest_import."""

    def make(account: FarmAccount, *, files: int = 3, name: str = "shots", user: Any = None) -> Manifest:
        folder = Path(settings.ALLOWED_LOCAL_ROOTS[0]) / f"t-{uuid.uuid4().hex[:12]}"
        folder.mkdir(parents=True)
        paths = []
        for number in range(files):
            path = folder / f"f{number}.bin"
            path.write_bytes(b"x" * (number + 1))
            paths.append(path)
        data = json.dumps({"asset": [{"local": str(p), "server": str(p)} for p in paths]}).encode()
        return services.manifest_import(name=name, account=account, data=data, user=user)

    return make


@pytest.fixture
def make_job(db: None) -> Callable[..., TransferJob]:
    """make_job(account=…, or manifest=…, status="running", created_by=user): the row only, no items, no worker."""

    def make(
        *,
        account: FarmAccount | None = None,
        manifest: Manifest | None = None,
        status: str = TransferJob.Status.RUNNING,
        created_by: Any = None,
        **fields: Any,
    ) -> TransferJob:
        if account is None:
            assert manifest is not None, "make_job needs an account or a manifest"
            account = manifest.account
        return TransferJob.objects.create(account=account, manifest=manifest, status=status, created_by=created_by, **fields)

    return make


@pytest.fixture
def farm_root(settings: Any, tmp_path: Path) -> Path:
    """A fresh FARM_ROOT for the test: account ids repeat between tests, their farm folders must not."""
    settings.FARM_ROOT = tmp_path / "farm"
    return settings.FARM_ROOT


@pytest.fixture
def make_farm_task(db: None) -> Callable[..., FarmTask]:
    """make_farm_task(account, task_id=1001, scene="shot", status=0, parent=None, frames_expected=10, layer=""):
    the row only (its output folder as the farm names it); no frames, no events."""

    def make(account: FarmAccount, *, task_id: int | None = None, scene: str = "shot", **fields: Any) -> FarmTask:
        task_id = task_id or 1000 + next(_numbers)
        parent = fields.get("parent")
        layer = fields.get("layer", "")
        folder = f"{parent.output_folder}/{layer}" if parent is not None and layer else f"{task_id}_{scene}"
        fields.setdefault("output_folder", folder)
        return FarmTask.objects.create(account=account, task_id=task_id, scene=scene, **fields)

    return make


@pytest.fixture
def transmitter_on_path(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Path:
    """In this process (as the test worker has it): the fake transmitter first on PATH, on the fake farm's
    storage, and neither RVWEB_TRANSMITTER nor an installed one in its way."""
    monkeypatch.setenv("PATH", f"{FAKE_DIR}:{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_FOX_STORAGE", str(fake_fox_storage()))
    settings.TRANSMITTER_PATH = ""
    settings.TRANSMITTER_PASS_ENV = ["FAKE_FOX_STORAGE"]
    monkeypatch.setattr(transmitter_install, "installed", lambda **_: None)
    return FAKE_DIR / "rayvision_transmitter"


@pytest.fixture
def no_transmitter(monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path) -> None:
    """No transmitter anywhere this process would look."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    settings.TRANSMITTER_PATH = ""
    monkeypatch.setattr(transmitter_install, "installed", lambda **_: None)


@pytest.fixture
def fox_account(make_account: Callable[..., FarmAccount], fox_farm: FoxFarmFake) -> Callable[..., FarmAccount]:
    """A fox FarmAccount pointed at the fake farm: fox_account() for the main account, fox_account("sub")."""

    def make(who: str = "main", **fields: Any) -> FarmAccount:
        return make_account(kind=FarmAccount.Kind.FOX, **{**fox_farm.account_kwargs(who), **fields})

    return make


@pytest.fixture
def without_fox_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry without the Fox connector: a fox account is then one no connector reaches."""
    from transfers.farm import CONNECTORS

    monkeypatch.delitem(CONNECTORS, FarmAccount.Kind.FOX)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests reach 127.0.0.1 only: an HTTP request (through requests) to any other host fails at once,
    before a DNS look-up. A fox account left at the farm's real domain (schemathesis may make one, or
    turn an account into one) then fails to connect instead of calling the real farm."""
    send = requests.adapters.HTTPAdapter.send

    def guarded(self: requests.adapters.HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        host = urlsplit(request.url or "").hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise requests.ConnectionError(f"the tests reach 127.0.0.1 only, not {host}")
        return send(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", guarded)
