"""Path rules: a server path can never escape its storage root; a local path must lie under an allowed root."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

PARTIAL_SUFFIX = ".rvpart"  # in the names of the storage's own files: partial files, range markers and their temps


class PathRefused(ValueError):
    """A path the engine will not touch; the message says why, in words a user can act on."""


def clean_server_path(server: str) -> str:
    """The storage-relative form of a manifest's server path: `/D/a/b` and `D\\a\\b` both give `D/a/b`.

    Refuses empty paths, NUL bytes and any `..` component: a server path names a file inside the
    storage root and nothing else. Refuses names the storage uses for its own files (any component
    holding `.rvpart`): such a file would be taken for, or overwritten as, another's partial file.
    """
    if not isinstance(server, str) or not server.strip():
        raise PathRefused("server path is empty")
    if "\x00" in server:
        raise PathRefused("server path contains a NUL byte")
    slashed = server.replace("\\", "/")
    parts = slashed.split("/")
    if "" in parts or "." in parts:
        parts = [part for part in parts if part not in ("", ".")]
    if ".." in parts:
        raise PathRefused(f"server path {server!r} contains '..'")
    rare = slashed != slashed.strip() or " /" in slashed or "/ " in slashed or "\t" in slashed  # only then look closer
    if rare and any(not part.strip() for part in parts):
        raise PathRefused(f"server path {server!r} has a blank folder or file name")
    if not parts:
        raise PathRefused(f"server path {server!r} names no file")
    if PARTIAL_SUFFIX in server:
        reserved = next(part for part in parts if PARTIAL_SUFFIX in part)
        raise PathRefused(
            f"server path {server!r} uses the reserved name {reserved!r} (names holding {PARTIAL_SUFFIX!r} are for partial files)"
        )
    return "/".join(parts)


def server_target(root: Path, server: str) -> Path:
    """The absolute destination of `server` under `root`, refusing anything that resolves outside it.

    The resolve() catches a symlink planted inside the storage root that points elsewhere.
    """
    target = root / clean_server_path(server)
    try:
        inside = target.parent.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside or target.is_symlink():
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
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        raise PathRefused(f"local path {local!r} cannot be resolved (a symlink loop?)") from None
    if not any(real.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(root) for root in roots) or "(none configured)"
        raise PathRefused(f"local path {local!r} is outside the allowed roots ({allowed})")
    return real


def _split_local(local: str) -> tuple[str, list[str]]:
    """(root, components) of an absolute local path in any of the SDK's spellings.

    root is "D" for a drive path, "//host" for a UNC path, "/" for a POSIX path. Refuses relative
    and drive-relative (`D:foo`) paths, NUL bytes and `..`.
    """
    if not isinstance(local, str) or not local.strip():
        raise PathRefused("local path is empty")
    if "\x00" in local:
        raise PathRefused("local path contains a NUL byte")
    text = local.replace("\\", "/")
    if len(text) >= 2 and text[1] == ":" and text[0].isascii() and text[0].isalpha():
        if len(text) > 2 and text[2] != "/":
            raise PathRefused(f"local path {local!r} is relative to a drive's current folder")
        root, rest = text[0].upper(), text[2:]  # one rule: drive letters are upper case
    elif text.startswith("//"):
        host, _, rest = text[2:].lstrip("/").partition("/")
        if not host or host in (".", ".."):
            raise PathRefused(f"UNC path {local!r} names no host")
        root = "//" + host
    elif text.startswith("/"):
        root, rest = "/", text
    else:
        raise PathRefused(f"local path {local!r} is not absolute")
    parts = [part for part in rest.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise PathRefused(f"local path {local!r} contains '..'")
    return root, parts


def local_to_server(local: str) -> str:
    """The SDK's local-to-server rule, done right in every case.

    * `D:\\a\\b` and `d:/a//b` -> `/D/a/b` (the drive letter is upper-cased, one colon removed)
    * `\\\\host\\share\\x` -> `/host/share/x` (as the SDK, so the farm resolves references the same way)
    * `/mnt/x` -> `/mnt/x` (the SDK drops the first character here; we do not)
    Relative paths are refused, never guessed at.
    """
    root, parts = _split_local(local)
    head = root.lstrip("/") if root != "/" else ""
    return "/" + "/".join([head, *parts] if head else parts)


def normalize_local(local: str) -> str:
    """A local path in one canonical spelling (`D:/a/b`, `//host/a`, `/a/b`), used to match mapping rules."""
    root, parts = _split_local(local)
    prefix = f"{root}:" if len(root) == 1 and root != "/" else ("" if root == "/" else root)
    return prefix + "/" + "/".join(parts)


class PathMap:
    """Per-account rules that turn a manifest's local path into the path this worker reads.

    `{"D:/": "/mnt/studio/D/"}` maps `D:\\shots\\a.exr` to `/mnt/studio/D/shots/a.exr`. Rules match whole
    path components (`D:/proj` does not match `D:/project`), and the longest matching prefix wins.
    A path no rule matches is used as it is.
    """

    def __init__(self, rules: dict[str, str] | None = None) -> None:
        self.rules: list[tuple[str, str]] = []
        for source, target in (rules or {}).items():
            if not target or "\x00" in target or not target.startswith("/"):
                raise PathRefused(f"mapping target {target!r} for {source!r} must be an absolute POSIX path")
            self.rules.append((normalize_local(source).rstrip("/"), target.rstrip("/")))
        self.rules.sort(key=lambda rule: len(rule[0]), reverse=True)

    def apply(self, local: str) -> str:
        if not self.rules and local.startswith("/") and not local.startswith("//") and "\\" not in local:
            return local  # the common case: POSIX paths, no rules (local_source checks the rest)
        canonical = normalize_local(local)
        for source, target in self.rules:
            if source == "" and canonical.startswith("//"):
                continue  # a rule for the POSIX root "/" does not cover UNC paths
            if canonical == source or canonical.startswith(source + "/"):
                return target + canonical[len(source) :]
        return canonical


class SourceResolver:
    """local_source for many files: each folder's real path is resolved once (resolving costs ~35 us,
    and a tree has few folders and many files); each file is still checked for being a symlink.

    For planning only (what to skip, what to send): a path it resolved may change before the file is
    opened, so the open itself goes through engine.localfs.LocalTree, which re-checks every component."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = list(roots)
        self._prefixes = tuple(str(root).rstrip("/") + "/" for root in self.roots)
        self._folders: dict[str, str] = {}

    def resolve_stat(self, local: str) -> tuple[str, os.stat_result | None]:
        """The real path and its stat (None: missing) in one system call for the usual file."""
        folder, _, name = local.rpartition("/")
        if not local.startswith("/") or "\x00" in local or name in ("", ".", ".."):
            return self._slow(local)  # the slow path says exactly what is wrong
        real = self._folders.get(folder)
        if real is None:
            real = str(local_source(folder or "/", self.roots)) if folder else "/"
            if len(self._folders) >= 4096:
                self._folders.clear()
            self._folders[folder] = real
        candidate = f"{real}/{name}" if real != "/" else f"/{name}"
        try:
            info = os.stat(candidate, follow_symlinks=False)
        except FileNotFoundError:
            return candidate, None
        if stat.S_ISLNK(info.st_mode):
            return self._slow(local)
        return candidate, info

    def _slow(self, local: str) -> tuple[str, os.stat_result | None]:
        path = str(local_source(local, self.roots))
        try:
            return path, os.stat(path)
        except OSError:
            return path, None
