"""rvweb's own app: hooks that belong to the site rather than to transfers (file modes, lockout audit)."""

from __future__ import annotations

import os
from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _private_sqlite_files(sender: Any, connection: Any, **kwargs: Any) -> None:
    """SQLite creates the database with the process umask (often 0644) and gives its -wal and -shm
    the database file's mode: make the database 0600 whenever a connection opens it, so the journal
    files that follow are private too."""
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict["NAME"])
    if name.startswith("file:") or name == ":memory:":
        return
    for path in (name, f"{name}-wal", f"{name}-shm"):
        try:
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
        except FileNotFoundError:
            pass


class RvwebConfig(AppConfig):
    name = "rvweb"
    verbose_name = "rvweb site"

    def ready(self) -> None:
        from rvweb import lockout

        connection_created.connect(_private_sqlite_files, dispatch_uid="rvweb-private-sqlite")
        lockout.connect()
