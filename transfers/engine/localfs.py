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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from transfers.engine.paths import PathRefused

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FOLDER_MODE = 0o755


class NotAFile(Exception):
    """The path names a folder, a FIFO, a device or a socket: nothing to send or overwrite."""


class Folder:
    """A checked folder's descriptor, closed once it is evicted and no thread uses it any more: closing
    it under a user could make that thread open relative to whatever the number is reused for."""

    __slots__ = ("evicted", "fd", "users")

    def __init__(self, fd: int) -> None:
        self.fd, self.users, self.evicted = fd, 0, False


class Place:
    """A folder path parsed once against the roots (for `hold`): its root, the root's device, its components."""

    __slots__ = ("device", "key", "parts", "path", "root")

    def __init__(self, path: str, root: Folder, device: int, parts: list[str]) -> None:
        self.path, self.root, self.device, self.parts = path, root, device, parts
        self.key = (root.fd, "/".join(parts))


class LocalTree:
    """The allowed roots of one run, opened once; `open_file` and `folder` never follow a symlink below them.

    Thread-safe; no system call is made under its lock. Call close() (or use it as a context manager)
    when the run ends.
    """

    def __init__(self, roots: Sequence[str | os.PathLike[str]], *, cached_folders: int = 256) -> None:
        self._roots: list[tuple[str, Folder, int]] = []  # (spelling, root, st_dev), longest spelling first
        self._opened: list[Folder] = []
        for root in roots:
            real = os.path.realpath(root)
            try:
                folder = Folder(os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            except OSError:
                continue  # a root that is not there allows nothing
            self._opened.append(folder)
            device = os.fstat(folder.fd).st_dev
            for spelling in {os.fspath(root).rstrip("/") or "/", real}:
                self._roots.append((spelling, folder, device))
        self._roots.sort(key=lambda root: len(root[0]), reverse=True)
        self._folders: OrderedDict[tuple[int, str], Folder] = OrderedDict()  # (root fd, relative folder)
        self._cached = max(1, cached_folders)
        self._lock = threading.Lock()

    def __enter__(self) -> LocalTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            folders = [*self._folders.values(), *self._opened]
            self._folders.clear()
            self._opened.clear()
            self._roots.clear()
        for folder in folders:
            os.close(folder.fd)

    def open_file(self, path: str | os.PathLike[str], flags: int = os.O_RDONLY, mode: int = 0o644) -> tuple[int, os.stat_result]:
        """An fd and its fstat for the regular file at `path` (O_NONBLOCK: a FIFO cannot hang us).

        Raises PathRefused (outside the roots, a symlink on the way, another filesystem), NotAFile,
        or the OSError of the open (FileNotFoundError, PermissionError...). With O_CREAT in `flags`
        the file is created with `mode` (for download destinations).
        """
        text = os.fspath(path)
        root, device, parts = self._locate(text)
        if not parts:
            raise NotAFile(f"local path is a folder, not a file: {text}")
        folder = self._acquire(text, root, device, parts[:-1], create=False)
        try:
            fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=folder.fd)
        except OSError as exc:
            raise _refusal(exc, text, parts[-1], folder.fd) from exc
        finally:
            self._release(folder)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_dev != device:
            os.close(fd)
            if stat.S_ISDIR(info.st_mode):
                raise NotAFile(f"local path is a folder, not a file: {text}")
            if not stat.S_ISREG(info.st_mode):
                raise NotAFile(f"local path is not a regular file: {text}")
            raise PathRefused(f"local path {text!r} is on another filesystem than its allowed root")
        return fd, info

    @contextmanager
    def folder(self, path: str | os.PathLike[str], *, create: bool = False) -> Iterator[int]:
        """A descriptor of the folder at `path`, valid inside the `with` block (the tree owns it).

        create=True makes missing folders on the way, mode 0755 whatever the umask.
        """
        text = os.fspath(path)
        root, device, parts = self._locate(text)
        folder = self._acquire(text, root, device, parts, create=create)
        try:
            yield folder.fd
        finally:
            self._release(folder)

    def place(self, path: str) -> Place:
        """Where a folder path lies below the roots (raises PathRefused), to `hold` it many times without
        parsing it again. Valid until close()."""
        return Place(path, *self._locate(path))

    def hold(self, place: Place, *, create: bool = False) -> Folder:
        """`folder` without the context manager, for hot paths: use `.fd`, then `let_go` it (try/finally)."""
        return self._acquire(place.path, place.root, place.device, place.parts, create=create, key=place.key)

    def let_go(self, folder: Folder) -> None:
        self._release(folder)

    def forget(self, path: str) -> None:
        """Drop a cached folder (it was removed: the next use walks, and may make, it again)."""
        root, _, parts = self._locate(path)
        with self._lock:
            folder = self._folders.pop((root.fd, "/".join(parts)), None) if parts else None
            closing = folder is not None and folder.users == 0
            if folder is not None:
                folder.evicted = True
        if closing:
            assert folder is not None
            os.close(folder.fd)

    def _locate(self, path: str) -> tuple[Folder, int, list[str]]:
        if not path.startswith("/") or "\x00" in path:
            raise PathRefused(f"local path {path!r} is not an absolute path")
        for spelling, root, device in self._roots:
            if spelling == "/" or path == spelling or path.startswith(spelling + "/"):
                parts = [part for part in path[len(spelling) :].split("/") if part not in ("", ".")]
                if ".." in parts:
                    raise PathRefused(f"local path {path!r} contains '..'")
                return root, device, parts
        raise PathRefused(f"local path {path!r} is outside the allowed roots")

    def _acquire(
        self, path: str, root: Folder, device: int, parts: list[str], *, create: bool, key: tuple[int, str] | None = None
    ) -> Folder:
        """The folder `parts` below `root`, from the cache or walked; the caller must _release it."""
        key = key or (root.fd, "/".join(parts))
        with self._lock:
            folder = self._folders.get(key) if parts else root
            if folder is not None:
                folder.users += 1
                if parts:
                    self._folders.move_to_end(key)
                return folder
        fd = _walk(path, root.fd, device, parts, create=create)
        with self._lock:
            folder = self._folders.get(key)
            if folder is None:
                folder = self._folders[key] = Folder(fd)
                fd = -1
            folder.users += 1
            evicted = []
            while len(self._folders) > self._cached:
                _, old = self._folders.popitem(last=False)
                old.evicted = True
                if old.users == 0:
                    evicted.append(old.fd)
        if fd != -1:
            evicted.append(fd)  # another thread walked it meanwhile: keep one
        for number in evicted:
            os.close(number)
        return folder

    def _release(self, folder: Folder) -> None:
        with self._lock:
            folder.users -= 1
            closing = folder.evicted and folder.users == 0
        if closing:
            os.close(folder.fd)


def _walk(path: str, root_fd: int, device: int, parts: list[str], *, create: bool) -> int:
    """Open folder `parts` below `root_fd` one component at a time, following no symlink."""
    fd = root_fd
    try:
        for part in parts:
            try:
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, FOLDER_MODE, dir_fd=fd)
                        made = True
                    except FileExistsError:
                        made = False  # made by another run meanwhile
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    if made:
                        os.fchmod(child, FOLDER_MODE)  # the umask may have cut the mode
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
