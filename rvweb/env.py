"""Typed readers of the environment: every setting comes through here.

Each helper fails loudly (ImproperlyConfigured naming the variable) on a value it cannot use, so a
typo in a deployment stops the process at start-up instead of surfacing as odd behaviour later.
Values are never echoed back for variables that may hold secrets.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str) -> str:
    value = _raw(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: expected one of 1/0, true/false, yes/no, on/off")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected an integer") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ImproperlyConfigured(f"{name}={number}: expected a value in [{minimum}, {maximum}]")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default)
    return [part.strip() for part in value.split(",") if part.strip()]


def env_path(name: str, default: Path) -> Path:
    value = _raw(name)
    path = default if not value else Path(value).expanduser()
    return path.resolve()


def env_paths(name: str, default: list[Path]) -> list[Path]:
    value = _raw(name)
    if value is None or value == "":
        return [p.resolve() for p in default]
    paths = [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]
    relative = [str(p) for p in paths if not p.is_absolute()]
    if relative:
        raise ImproperlyConfigured(f"{name}: paths must be absolute, got {', '.join(relative)}")
    return [p.resolve() for p in paths]


def apart(farm_root: Path, allowed_roots: list[Path]) -> None:
    """The farm's storage and the users' allowed local roots must not overlap: a manifest or a download
    naming a path under an allowed root would otherwise reach every team's farm storage."""
    for root in allowed_roots:
        if farm_root == root or root in farm_root.parents or farm_root in root.parents:
            raise ImproperlyConfigured(
                f"RVWEB_FARM_ROOT ({farm_root}) and RVWEB_ALLOWED_LOCAL_ROOTS ({root}) overlap: "
                "users could read or write every team's farm storage through their local paths; keep them apart"
            )


def env_url(name: str, default: str | None, *, schemes: tuple[str, ...]) -> str | None:
    """A URL whose scheme is one of `schemes`; the value is not echoed since it may hold a password."""
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        scheme = urlsplit(value).scheme
    except ValueError:
        raise ImproperlyConfigured(f"{name}: not a valid URL") from None
    if scheme not in schemes:
        raise ImproperlyConfigured(f"{name}: scheme {scheme!r} is not one of {', '.join(schemes)}")
    return value


def secret_in_file(name: str, path: Path, *, generate: Callable[[], str] = lambda: secrets.token_urlsafe(50)) -> str:
    """The variable's value, or one generated once into `path` (mode 0600) and reused after."""
    value = _raw(name)
    if value:
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written whole to a private temporary file, then linked into place: a process starting at
        # the same moment sees no file or the complete one, and the first link wins.
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(generate() + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    stored = path.read_text().strip()
    if not stored:
        raise ImproperlyConfigured(f"{path} is empty: delete it to generate a new {name}")
    return stored
