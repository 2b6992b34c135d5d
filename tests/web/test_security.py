"""Hardening of the edges: unknown websocket paths, login throttling, security headers, file modes."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from rvweb.asgi import application
from transfers.consumers import CLOSE_NOT_FOUND

ALLOWED_ORIGIN = b"http://127.0.0.1"


# --- websocket paths no route matches ------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/ws/nope/", "/ws/jobs/abc/", "/ws/jobs/1/extra/", "/", "/ws/jobs/%2e%2e/"])
async def test_a_websocket_path_no_route_matches_is_closed_cleanly(path):
    socket = WebsocketCommunicator(application, path, headers=[(b"origin", ALLOWED_ORIGIN), (b"host", b"127.0.0.1")])

    accepted, code = await socket.connect(timeout=5)

    assert (accepted, code) == (False, CLOSE_NOT_FOUND)


# --- login throttling -----------------------------------------------------------------------------

PASSWORD = "pw-right-4711"


@pytest.fixture
def lead(django_user_model):
    return django_user_model.objects.create_user("lead", password=PASSWORD)


def _fail(client, username: str, times: int) -> None:
    for _ in range(times):
        response = client.post("/login/", {"username": username, "password": "wrong-guess"})
        assert response.status_code in (200, 429)


@pytest.mark.django_db
def test_the_right_password_is_refused_after_too_many_failures_for_the_account(client, lead, settings):
    _fail(client, "lead", settings.AXES_FAILURE_LIMIT)

    response = client.post("/login/", {"username": "lead", "password": PASSWORD})

    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert b"Traceback" not in response.content
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_one_address_trying_many_accounts_is_locked_out(client, lead, settings):
    for number in range(settings.AXES_FAILURE_LIMIT):
        _fail(client, f"guess{number}", 1)

    response = client.post("/login/", {"username": "lead", "password": PASSWORD})

    assert response.status_code == 429


@pytest.mark.django_db
def test_failures_below_the_limit_do_not_lock_out(client, lead, settings):
    _fail(client, "lead", settings.AXES_FAILURE_LIMIT - 1)

    response = client.post("/login/", {"username": "lead", "password": PASSWORD})

    assert response.status_code == 302


@pytest.mark.django_db
def test_a_lockout_is_audited_with_the_attempted_name_and_address_never_the_password(client, lead, settings):
    from transfers.models import AuditEvent

    _fail(client, "lead", settings.AXES_FAILURE_LIMIT)

    event = AuditEvent.objects.filter(action="auth.lockout").latest("pk")
    assert (event.actor_name, event.remote_addr, event.outcome) == ("lead", "127.0.0.1", "locked_out")
    assert (event.target_type, event.target_id) == ("Login", "lead")
    assert "wrong-guess" not in str(AuditEvent.objects.filter(action="auth.lockout").values())


@pytest.mark.django_db
def test_a_lockout_of_a_name_no_account_has_is_audited_with_that_name(client, settings):
    from transfers.models import AuditEvent

    _fail(client, "nobody-here", settings.AXES_FAILURE_LIMIT)

    event = AuditEvent.objects.filter(action="auth.lockout").latest("pk")
    assert (event.target_id, event.after["username"], event.remote_addr) == ("nobody-here", "nobody-here", "127.0.0.1")
    assert "wrong-guess" not in str(AuditEvent.objects.filter(action="auth.lockout").values())


def _basic(username: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.mark.django_db
def test_basic_auth_on_the_api_is_throttled_too(client, lead, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        assert client.get("/api/jobs/", HTTP_AUTHORIZATION=_basic("lead", "wrong-guess")).status_code in (401, 403, 429)

    response = client.get("/api/jobs/", HTTP_AUTHORIZATION=_basic("lead", PASSWORD))

    assert response.status_code == 429
    error = response.json()["error"]  # the API's one error shape
    assert error["code"] == "locked_out" and "too many failed logins" in error["message"]
    assert b"Traceback" not in response.content


@pytest.mark.django_db
def test_basic_auth_with_the_right_password_works_before_any_lockout(client, lead):
    assert client.get("/api/jobs/", HTTP_AUTHORIZATION=_basic("lead", PASSWORD)).status_code == 200


# --- headers --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy_without_inline_script(client):
    policy = client.get("/login/")["Content-Security-Policy"]

    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert "frame-ancestors" in directives


def test_no_template_has_inline_script_or_event_handlers():
    import re
    from pathlib import Path

    from django.conf import settings

    for template in (Path(settings.BASE_DIR) / "templates").rglob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, f"inline script in {template}"
        assert not re.search(r"\son[a-z]+\s*=", text), f"inline event handler in {template}"


def _header_in_subprocess(secure: bool) -> str:
    import os
    import subprocess
    import sys

    from django.conf import settings

    code = (
        "import django; django.setup(); from django.test import Client; "
        "r = Client().get('/login/', HTTP_X_FORWARDED_PROTO='https'); "
        "print(r.get('Strict-Transport-Security', '-'))"
    )
    env = dict(os.environ, RVWEB_SECURE_COOKIES="1" if secure else "0", ALLOWED_HOSTS="testserver")
    env["RVWEB_DATA_DIR"] = str(settings.DATA_DIR)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_hsts_is_sent_when_secure_cookies_are_on():
    assert _header_in_subprocess(True).startswith("max-age=31536000")


def test_hsts_is_not_sent_by_default():
    assert _header_in_subprocess(False) == "-"


# --- file modes -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_data_dir_and_the_sqlite_files_are_private():
    """The data dir always; the database files when the database is SQLite (PostgreSQL keeps its own)."""
    import os
    import stat

    from django.conf import settings
    from django.db import connection

    connection.ensure_connection()
    name = connection.settings_dict["NAME"]

    assert stat.S_IMODE(os.stat(settings.DATA_DIR).st_mode) == 0o700
    if connection.vendor != "sqlite":
        return
    for path in (name, f"{name}-wal", f"{name}-shm"):
        if os.path.exists(path):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert os.path.exists(name)


@pytest.mark.django_db
def test_a_new_sqlite_database_is_created_private(tmp_path):
    import os
    import stat

    from django.db.backends.sqlite3.base import DatabaseWrapper

    settings_dict = {
        "NAME": str(tmp_path / "new.sqlite3"), "ENGINE": "django.db.backends.sqlite3", "OPTIONS": {},
        "TIME_ZONE": None, "CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": False, "AUTOCOMMIT": True, "ATOMIC_REQUESTS": False,
        "USER": "", "PASSWORD": "", "HOST": "", "PORT": "", "TEST": {},
    }  # fmt: skip
    wrapper = DatabaseWrapper(settings_dict, alias="modes")
    with wrapper.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("CREATE TABLE t (x int)")
        modes = {path.name: stat.S_IMODE(os.stat(path).st_mode) for path in tmp_path.iterdir()}
    wrapper.close()

    assert modes["new.sqlite3"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes
