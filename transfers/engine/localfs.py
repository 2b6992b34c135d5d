"""Opening local files under an allowed root so that no path component can be swapped after a check.

A path string checked earlier proves nothing at open time: any folder on the way may have been
replaced by a symlink since (to /etc, say). So every open starts from a file descriptor of the
allowed root itself, opened once per run, and walks down one component at a time with O_NOFOLLOW;
the opened file is then checked through its descriptor (fstat): a regular file on the root's device.

Symlinks: an allowed root may itself be a symlink (it is resolved once, when the tree is made).
Below a root, the walk follows no symlink at all and says so ("... is a symlink"). Callers that
accept symlinks inside a root (the runner resolves manifest paths when it plans) hand in the
resolved path; should a component become a symlink after that, the open refuses it.

Folder descriptors found by the walk are kept in a small LRU: a descriptor keeps pointing at the
folder that was checked even if its path is swapped later, so reusing it is as safe as walking again.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Sequence

from transfers.engine.paths import PathRefused

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FOLDER_MODE = 0o755


class NotAFile(Exception):
    """The path names a folder, a FIFO, a device or a socket: nothing to send or overwrite."""


class LocalTree:
    """The allowed roots of one run, opened once; `open_file` and `folder` never follow a symlink below them.

    Thread-safe. Call close() (or use it as a context manager) when the run ends.
    """

    def __init__(self, roots: Sequence[str | os.PathLike[str]], *, cached_folders: int = 256) -> None:
        self._roots: list[tuple[str, int, int]] = []  # (spelling, fd, st_dev), longest spelling first
        self._fds: list[int] = []
        for root in roots:
            real = os.path.realpath(root)
            try:
                fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                continue  # a root that is not there allows nothing
            self._fds.append(fd)
            device = os.fstat(fd).st_dev
            for spelling in {os.fspath(root).rstrip("/") or "/", real}:
                self._roots.append((spelling, fd, device))
        self._roots.sort(key=lambda root: len(root[0]), reverse=True)
        self._folders: OrderedDict[str, int] = OrderedDict()  # "<root fd>:<relative folder>" -> fd
        self._cached = max(1, cached_folders)
        # Held while a cached descriptor is used: evicting (closing) one another thread is using
        # could make that thread open relative to whatever the number is reused for.
        self._lock = threading.Lock()

    def __enter__(self) -> LocalTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for fd in self._folders.values():
                os.close(fd)
            self._folders.clear()
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()
            self._roots.clear()

    def open_file(self, path: str | os.PathLike[str], flags: int = os.O_RDONLY, mode: int = 0o644) -> tuple[int, os.stat_result]:
        """An fd and its fstat for the regular file at `path` (O_NONBLOCK: a FIFO cannot hang us).

        Raises PathRefused (outside the roots, a symlink on the way, another filesystem), NotAFile,
        or the OSError of the open (FileNotFoundError, PermissionError...). With O_CREAT in `flags`
        the file is created with `mode` (for download destinations).
        """
        text = os.fspath(path)
        root_fd, device, parts = self._locate(text)
        if not parts:
            raise NotAFile(f"local path is a folder, not a file: {text}")
        with self._lock:
            folder = self._folder(text, root_fd, device, parts[:-1], create=False)
            try:
                fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=folder)
            except OSError as exc:
                raise _refusal(exc, text, parts[-1], folder) from exc
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_dev != device:
            os.close(fd)
            if stat.S_ISDIR(info.st_mode):
                raise NotAFile(f"local path is a folder, not a file: {text}")
            if not stat.S_ISREG(info.st_mode):
                raise NotAFile(f"local path is not a regular file: {text}")
            raise PathRefused(f"local path {text!r} is on another filesystem than its allowed root")
        return fd, info

    def folder(self, path: str | os.PathLike[str], *, create: bool = False) -> int:
        """A descriptor of the folder at `path`, owned by the tree (do not close it; valid until close()).

        create=True makes missing folders on the way, mode 0755 whatever the umask.
        """
        text = os.fspath(path)
        root_fd, device, parts = self._locate(text)
        with self._lock:
            return self._folder(text, root_fd, device, parts, create=create)

    def _locate(self, path: str) -> tuple[int, int, list[str]]:
        if not path.startswith("/") or "\x00" in path:
            raise PathRefused(f"local path {path!r} is not an absolute path")
        for spelling, fd, device in self._roots:
            if spelling == "/" or path == spelling or path.startswith(spelling + "/"):
                parts = [part for part in path[len(spelling) :].split("/") if part not in ("", ".")]
                if ".." in parts:
                    raise PathRefused(f"local path {path!r} contains '..'")
                return fd, device, parts
        raise PathRefused(f"local path {path!r} is outside the allowed roots")

    def _folder(self, path: str, root_fd: int, device: int, parts: list[str], *, create: bool) -> int:
        """The folder `parts` below the root, walked without following symlinks (the lock is held)."""
        if not parts:
            return root_fd
        key = f"{root_fd}:" + "/".join(parts)
        fd = self._folders.get(key)
        if fd is not None:
            self._folders.move_to_end(key)
            return fd
        fd = root_fd
        try:
            for part in parts:
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, FOLDER_MODE, dir_fd=fd)
                        os.chmod(part, FOLDER_MODE, dir_fd=fd, follow_symlinks=False)  # the umask may have cut it
                    except FileExistsError:
                        pass  # made by another run meanwhile
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise _refusal(exc, path, part, fd) from exc
                if fd != root_fd:
                    os.close(fd)
                fd = child
                if os.fstat(fd).st_dev != device:
                    raise PathRefused(f"local path {path!r} crosses into another filesystem at {part!r}")
        except BaseException:
            if fd != root_fd:
                os.close(fd)
            raise
        self._folders[key] = fd
        if len(self._folders) > self._cached:
            os.close(self._folders.popitem(last=False)[1])
        return fd


def _refusal(exc: OSError, path: str, part: str, folder_fd: int) -> Exception:
    """A symlink met on the way becomes a PathRefused that says so; other errors stay as they are."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        try:
            if stat.S_ISLNK(os.lstat(part, dir_fd=folder_fd).st_mode):
                return PathRefused(f"local path {path!r} goes through a symlink at {part!r}; symlinks are not followed")
        except OSError:
            pass
        if exc.errno == errno.ENOTDIR:
            return NotADirectoryError(exc.errno, f"{part!r} is not a folder", path)
    return exc
