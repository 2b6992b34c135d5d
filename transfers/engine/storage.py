"""Storage backends behind one small protocol, and the local filesystem backend.

A backend stores files by server path (relative to its root, never escaping it). Writes go to a
partial file that can be reopened at an offset (resume) and is renamed into place only by
`finalize`, after its size and checksum were verified.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from transfers.engine import hashing
from transfers.engine.paths import PARTIAL_SUFFIX, clean_server_path, server_target

__all__ = ["PARTIAL_SUFFIX", "LocalStorage", "PartialBusy", "Storage", "StoredFile", "VerifyFailed", "stamp"]

FILE_MODE, FOLDER_MODE = 0o644, 0o755  # what lands in the farm, whatever the source's mode or the umask


@dataclass(frozen=True)
class StoredFile:
    path: str  # storage-relative, `/`-separated
    size: int
    mtime_ns: int


class VerifyFailed(Exception):
    """What arrived is not what was sent (size or checksum); the partial file is discarded."""


Stamp = tuple[int, int, int, int]  # size, mtime, ctime (ns), inode


def stamp(info: os.stat_result) -> Stamp:
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


class PartialBusy(OSError):
    """Another transfer holds this partial file (the same server path, written twice at once)."""


class Storage(Protocol):
    def stat(self, path: str) -> StoredFile | None: ...
    def has(self, path: str) -> bool: ...
    def names(self, folder: str) -> set[str]: ...
    def list(self, prefix: str = "") -> Iterator[StoredFile]: ...
    def partial_size(self, path: str) -> int: ...
    def open_partial(self, path: str, offset: int, *, size: int | None = None) -> BinaryIO: ...
    def partial_digest(self, path: str, start: int, length: int) -> bytes: ...
    def finalize(self, path: str, *, size: int, checksum: str, handle: BinaryIO, verified: Stamp | None = None) -> None: ...
    def discard_partial(self, path: str) -> None: ...
    def read_marker(self, path: str) -> bytes | None: ...
    def write_marker(self, path: str, data: bytes) -> None: ...
    def remove(self, path: str) -> None: ...
    def free_space(self) -> int: ...
    def sync(self) -> None: ...
    def native_path(self, path: str) -> Path | None: ...


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class LocalStorage:
    """A folder on this machine (the local farm's input/output/config areas).

    `label` names it in messages for people (`input storage of farm account "x"`); default: its path.
    """

    def __init__(self, root: str | os.PathLike[str], *, label: str | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.label = label or str(self.root)
        # Folders already checked to lie inside the root (resolving costs ~60 us; a tree has few
        # folders and many files). A symlink planted later cannot redirect a write: partial files
        # are opened with O_NOFOLLOW and renamed, never written through their final name.
        self._inside: set[str] = set()
        self._made: set[str] = set()
        self._root = str(self.root)
        self._paths: dict[str, tuple[str, str, str]] = {}
        self._marked: set[str] = set()  # paths this instance wrote a range marker for

    def _where(self, path: str) -> tuple[str, str, str]:
        """(final, partial, marker) paths of a server path, as strings (a small cache: one send asks ~7 times)."""
        hit = self._paths.get(path)
        if hit is not None:
            return hit
        relative = clean_server_path(path)
        folder, _, name = relative.rpartition("/")
        if folder not in self._inside:
            server_target(self.root, relative)  # raises PathRefused when it escapes the root
            self._inside.add(folder)
        base = f"{self._root}/{folder}" if folder else self._root
        where = (f"{base}/{name}", f"{base}/.{name}{PARTIAL_SUFFIX}", f"{base}/.{name}{PARTIAL_SUFFIX}.ranges")
        if len(self._paths) >= 1024:
            self._paths.clear()
        self._paths[path] = where
        return where

    def native_path(self, path: str) -> Path | None:
        """Where the final file lives on this machine's disk (enables the kernel copy path)."""
        return Path(self._where(path)[0])

    def has(self, path: str) -> bool:
        """A regular file is stored at `path` (cheaper than stat: no record built)."""
        try:
            return stat.S_ISREG(os.stat(self._where(path)[0], follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False

    def names(self, folder: str) -> set[str]:
        """Names of the files stored in a folder (one listing instead of a stat per file)."""
        base = self._root
        if folder.strip("/"):
            relative = clean_server_path(folder)
            if relative not in self._inside:
                server_target(self.root, f"{relative}/-")  # raises PathRefused when it escapes the root
                self._inside.add(relative)
            base = f"{self._root}/{relative}"
        try:
            with os.scandir(base) as entries:
                return {e.name for e in entries if e.is_file(follow_symlinks=False) and PARTIAL_SUFFIX not in e.name}
        except (FileNotFoundError, NotADirectoryError):
            return set()

    def stat(self, path: str) -> StoredFile | None:
        try:
            info = os.stat(self._where(path)[0], follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return StoredFile(clean_server_path(path), info.st_size, info.st_mtime_ns)

    def list(self, prefix: str = "") -> Iterator[StoredFile]:
        base = self.root / clean_server_path(prefix) if prefix.strip("/") else self.root
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            for name in sorted(files):
                if PARTIAL_SUFFIX in name:
                    continue  # partial files and their range markers
                full = Path(folder) / name
                info = full.stat()
                yield StoredFile(full.relative_to(self.root).as_posix(), info.st_size, info.st_mtime_ns)

    def partial_size(self, path: str) -> int:
        try:
            return os.stat(self._where(path)[1]).st_size
        except FileNotFoundError:
            return 0

    def open_partial(self, path: str, offset: int, *, size: int | None = None) -> BinaryIO:
        """The partial file, locked for this writer, cut to `offset` and positioned there.

        `size` instead sizes it for parallel ranges, keeping what it holds. Raises PartialBusy when
        another writer holds it. The lock lasts until the handle is closed (after finalize).
        """
        partial = self._where(path)[1]
        folder = os.path.dirname(partial)
        if folder not in self._made:
            self._make_folders(folder)
            self._made.add(folder)
        try:
            # Never O_TRUNC: only the lock holder may cut it. O_NOFOLLOW: never write through a symlink.
            fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        except FileNotFoundError:  # the folder was removed since: make it again
            self._make_folders(folder)
            fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        handle = open(fd, "r+b", buffering=0)  # noqa: SIM115 - the caller closes it
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PartialBusy(errno.EBUSY, f"{path} is being written by another transfer") from None
            if size is None:
                handle.truncate(offset)
            elif os.fstat(handle.fileno()).st_size != size:
                handle.truncate(size)
            handle.seek(offset)
        except BaseException:
            handle.close()
            raise
        return handle

    def _make_folders(self, folder: str) -> None:
        """Missing folders down to `folder`, each 0755 whatever the umask (existing ones are left as they are)."""
        missing = []
        current = folder
        while current != self._root and not os.path.isdir(current):
            missing.append(current)
            current = os.path.dirname(current)
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):  # made by another transfer meanwhile
                os.mkdir(path, FOLDER_MODE)
                os.chmod(path, FOLDER_MODE)

    def partial_digest(self, path: str, start: int, length: int) -> bytes:
        fd = os.open(self._where(path)[1], os.O_RDONLY)
        try:
            return hashing.hash_range(fd, start, length)
        finally:
            os.close(fd)

    def finalize(self, path: str, *, size: int, checksum: str, handle: BinaryIO, verified: Stamp | None = None) -> None:
        """Verify what `handle` (the locked partial) holds, then rename it into place.

        `verified`: the writer already read every byte back from the partial file and checked it
        (send.py does, chunk by chunk while the data is still in the page cache), and this is the
        file's stamp just after. If the file still has that stamp, nothing touched it since and the
        re-hash is skipped; any change (ctime moves on every write) means a full re-hash here.
        """
        final, partial, marker = self._where(path)
        held = os.fstat(handle.fileno())
        try:
            at_path = os.stat(partial)
        except FileNotFoundError:
            raise VerifyFailed(f"{path}: the partial file was removed while it was being written") from None
        if (at_path.st_dev, at_path.st_ino) != (held.st_dev, held.st_ino):
            raise VerifyFailed(f"{path}: the partial file was replaced while it was being written")
        if held.st_size != size:
            self.discard_partial(path)
            raise VerifyFailed(f"{path}: {held.st_size} bytes arrived, {size} were sent")
        arrived = checksum if verified == stamp(held) else hashing.fd_checksum(handle.fileno(), like=checksum)
        if arrived != checksum:
            self.discard_partial(path)
            raise VerifyFailed(f"{path}: checksum at the destination {arrived} differs from the sent {checksum}")
        if stat.S_IMODE(held.st_mode) != FILE_MODE:
            os.fchmod(handle.fileno(), FILE_MODE)  # an old partial, or a umask that cut the create mode
        if size >= _FSYNC_AT_LEAST:
            _fsync(handle.fileno())  # small files are made durable in bulk by sync()
        os.replace(partial, final)
        try:
            landed = os.stat(final, follow_symlinks=False)
        except FileNotFoundError:
            landed = None
        if landed is None or (landed.st_dev, landed.st_ino) != (held.st_dev, held.st_ino):
            # Something else took the final name at once (a second writer of the same path, a
            # bookkeeping name of ours reused): never call that file done.
            raise VerifyFailed(f"{path}: another file took its place just after it was renamed into place")
        if hashing.range_size_of(checksum) is not None or path in self._marked:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(marker)

    def discard_partial(self, path: str) -> None:
        _, partial, marker = self._where(path)
        for name in (partial, marker):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    def read_marker(self, path: str) -> bytes | None:
        """What a parallel-range send recorded about its finished ranges (for resume)."""
        try:
            with open(self._where(path)[2], "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def write_marker(self, path: str, data: bytes) -> None:
        self._marked.add(path)
        marker = self._where(path)[2]
        with open(marker + ".tmp", "wb") as handle:
            handle.write(data)
        os.replace(marker + ".tmp", marker)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._where(path)[0])

    def free_space(self) -> int:
        info = os.statvfs(self.root)
        return info.f_bavail * info.f_frsize

    def sync(self) -> None:
        """Flush every finished file of this filesystem to disk (one syncfs instead of one fsync each)."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _libc.syncfs(fd) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
        finally:
            os.close(fd)


_FSYNC_AT_LEAST = 4 << 20  # per-file fsync costs ~0.3 ms here: worth it only for files this big


def _fsync(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # some filesystems refuse fsync; nothing to flush there
            raise
