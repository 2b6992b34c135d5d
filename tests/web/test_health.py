"""/healthz against the real database, broker and channel layer, and with the broker gone."""

from __future__ import annotations

import socket
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connections

from rvweb import health

# Transactional: a test case wrapped in a transaction holds the SQLite write lock the check probes for.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A localhost port that is bound but never listens: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def broker_down(monkeypatch, refusing_port) -> str:
    # Celery reads CELERY_BROKER_URL from the environment before its configuration.
    url = f"redis://:hunter2-broker-password@127.0.0.1:{refusing_port}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    return url


def test_healthz_answers_200_when_every_service_answers(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok", "channel_layer": "ok"}


def test_healthz_answers_503_naming_the_broker_when_it_is_unreachable(client, broker_down):
    response = client.get("/healthz")

    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "unavailable"
    assert report["broker"].startswith("error: ")
    assert (report["database"], report["channel_layer"]) == ("ok", "ok")


def test_healthz_never_shows_the_broker_url_of_an_unreachable_broker(client, broker_down):
    response = client.get("/healthz")

    assert b"hunter2-broker-password" not in response.content
    assert broker_down.encode() not in response.content


def test_healthz_never_shows_the_text_of_a_failure(client, monkeypatch):
    url = "redis://:hunter2-broker-password@broker.example.com:6379/0"

    def failing_broker() -> None:
        raise ConnectionError(f"Error connecting to {url}")

    monkeypatch.setitem(health.CHECKS, "broker", failing_broker)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["broker"] == "error: ConnectionError"
    assert b"hunter2" not in response.content


def test_healthz_is_never_cached(client):
    response = client.get("/healthz")

    assert "no-cache" in response["Cache-Control"]


@pytest.fixture
def fresh_migration_check(monkeypatch):
    monkeypatch.setattr(health, "_migrated_at", -health._MIGRATIONS_CACHE)


@contextmanager
def _write_lock_held() -> Iterator[None]:
    """Another connection holds what a write needs, as a long migration or a stuck writer would."""
    from django.db import connection

    if connection.vendor == "sqlite":
        holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    other = connections.create_connection("default")
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            # EXCLUSIVE lets readers (the migration check) through and makes writers wait.
            cursor.execute("LOCK TABLE django_migrations IN EXCLUSIVE MODE")
        yield
    finally:
        other.rollback()
        other.close()


@contextmanager
def _empty_database() -> Iterator[None]:
    """The app's connection pointed at a database with nothing in it (a new file put in place of ours)."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    connection.close()
    if connection.vendor == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            empty = Path(folder) / "empty.sqlite3"
            sqlite3.connect(empty).close()
            connection.settings_dict["NAME"] = str(empty)
            try:
                yield
            finally:
                connection.close()
                connection.settings_dict["NAME"] = name
        return
    empty = f"{name}_empty_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{empty}"')
    connection.close()
    connection.settings_dict["NAME"] = empty
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = name
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{empty}"')


@pytest.mark.django_db(transaction=True)
def test_healthz_says_the_database_is_locked_while_another_connection_holds_the_write_lock(client):
    with _write_lock_held():
        started = time.monotonic()
        response = client.get("/healthz")
        took = time.monotonic() - started

    assert response.status_code == 503
    assert response.json()["database"] == "locked"
    assert took < 5, "the check must give up quickly"


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_503_when_the_database_was_replaced_by_an_empty_one(client, fresh_migration_check):
    with _empty_database():
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["database"] == "no tables"


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_503_when_migrations_are_not_applied(client, monkeypatch, fresh_migration_check):
    from django.db.migrations.executor import MigrationExecutor

    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets: [("transfers", "9999_future")])

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["database"] == "migrations not applied"


def test_healthz_checks_the_database_in_well_under_a_second(client, fresh_migration_check):
    client.get("/healthz")  # the first loads the migration files; later ones use the cached result
    started = time.monotonic()

    response = client.get("/healthz")

    assert response.json()["database"] == "ok"
    assert time.monotonic() - started < 1.0
