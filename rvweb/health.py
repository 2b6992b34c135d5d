"""/healthz: 200 only when the database, the broker and the channel layer all answer.

The database must do what the app needs, not only answer a SELECT: its tables exist, every
migration is applied, and a write would get its lock within two seconds.

Failures are reported by name and exception class only: a connection error's text can carry a URL
with a password in it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from rvweb.celery import app as celery_app

_TIMEOUT = 3.0


_WRITE_TIMEOUT = 2.0  # seconds a write may wait for a lock before the database counts as locked
_MIGRATIONS_CACHE = 10.0  # seconds; the plan needs every migration file loaded, so not every probe
_migrated_at = -_MIGRATIONS_CACHE


class Unhealthy(Exception):
    """A check's finding in our own words (never a driver's text, which can carry a URL)."""


def _database() -> None:
    """What the app needs: its tables, every migration applied, and a write that would go through."""
    with connection.cursor() as cursor:
        if "django_migrations" not in connection.introspection.table_names(cursor):
            raise Unhealthy("no tables")  # a new, empty database file put in place of ours
    _migrations_applied()
    if connection.vendor == "sqlite":
        _sqlite_writable()
    else:
        _writable()


def _migrations_applied() -> None:
    global _migrated_at
    if time.monotonic() - _migrated_at < _MIGRATIONS_CACHE:
        return
    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        raise Unhealthy("migrations not applied")
    _migrated_at = time.monotonic()


def _sqlite_writable() -> None:
    # A connection of our own: Django's may be inside a transaction, and this one must not wait 30 s.
    path = Path(connection.settings_dict["NAME"])
    try:
        probe = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=_WRITE_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        raise Unhealthy("cannot open") from exc
    try:
        probe.execute("BEGIN IMMEDIATE")  # takes the write lock, as a real write would
        probe.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        raise Unhealthy("locked" if "locked" in str(exc) or "busy" in str(exc) else "not writable") from exc
    finally:
        probe.close()


def _writable() -> None:
    timeout = f"{int(_WRITE_TIMEOUT * 1000)}ms"
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = '{timeout}'")
            cursor.execute(f"SET LOCAL lock_timeout = '{timeout}'")
            cursor.execute("UPDATE django_migrations SET app = app WHERE id = (SELECT MIN(id) FROM django_migrations)")
            transaction.set_rollback(True)
    except DatabaseError as exc:
        raise Unhealthy("locked" if "timeout" in str(exc) else "not writable") from exc


def _broker() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=_TIMEOUT)
        conn.default_channel  # noqa: B018 - opening a channel proves the broker talks, not only accepts


def _channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")

    async def round_trip() -> None:
        channel = await layer.new_channel("healthz.")
        await layer.send(channel, {"type": "healthz.ping"})
        message = await asyncio.wait_for(layer.receive(channel), _TIMEOUT)
        if message.get("type") != "healthz.ping":
            raise RuntimeError("channel layer returned a different message")

    async_to_sync(round_trip)()


CHECKS: dict[str, Callable[[], None]] = {"database": _database, "broker": _broker, "channel_layer": _channel_layer}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    report: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
            report[name] = "ok"
        except Unhealthy as exc:
            report[name] = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
            report[name] = f"error: {type(exc).__name__}"
    healthy = all(value == "ok" for value in report.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", **report}, status=200 if healthy else 503)
