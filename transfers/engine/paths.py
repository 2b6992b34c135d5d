"""Path rules: a server path can never escape its storage root; a local path must lie under an allowed root."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class PathRefused(ValueError):
    """A path the engine will not touch; the message says why, in words a user can act on."""


def clean_server_path(server: str) -> str:
    """The storage-relative form of a manifest's server path: `/D/a/b` and `D\\a\\b` both give `D/a/b`.

    Refuses empty paths, NUL bytes and any `..` component: a server path names a file inside the
    storage root and nothing else.
    """
    if not isinstance(server, str) or not server.strip():
        raise PathRefused("server path is empty")
    if "\x00" in server:
        raise PathRefused("server path contains a NUL byte")
    parts = [part for part in server.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise PathRefused(f"server path {server!r} contains '..'")
    if not parts:
        raise PathRefused(f"server path {server!r} names no file")
    return "/".join(parts)


def server_target(root: Path, server: str) -> Path:
    """The absolute destination of `server` under `root`, refusing anything that resolves outside it.

    The resolve() catches a symlink planted inside the storage root that points elsewhere.
    """
    target = root / clean_server_path(server)
    real_root = root.resolve()
    if not target.parent.resolve().is_relative_to(real_root) or target.is_symlink():
        raise PathRefused(f"server path {server!r} escapes the storage root")
    return target


def local_source(local: str, roots: Sequence[Path]) -> Path:
    """The real path of a local file, which must lie under one of `roots` once symlinks are followed."""
    if not isinstance(local, str) or not local.strip():
        raise PathRefused("local path is empty")
    if "\x00" in local:
        raise PathRefused("local path contains a NUL byte")
    path = Path(local)
    if not path.is_absolute():
        raise PathRefused(f"local path {local!r} is not absolute")
    real = path.resolve()
    if not any(real.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(root) for root in roots) or "(none configured)"
        raise PathRefused(f"local path {local!r} is outside the allowed roots ({allowed})")
    return real
