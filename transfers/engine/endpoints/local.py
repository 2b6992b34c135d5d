"""The local transport: folders on this machine, as a destination and as a source.

* `LocalFolder` (alias `LocalStorage`): files by relative path under one root: the local farm's storage
  areas, a download's local folder. Writes go to a partial file (`.<name>.rvpart`, opened with
  O_NOFOLLOW, mode 0644 whatever the umask, folders 0755) that can be reopened at an offset (resume)
  and is renamed into place only by `finalize`, after its size and checksum were verified; the inode
  at the final name is checked after the rename. Reads open each file through a LocalTree of the root
  (an O_NOFOLLOW walk from the root's descriptor, a regular file on the root's device).
  Given `allowed_roots`, the root itself must lie below one of them (walked the same way, made if missing).

The user's own files by absolute path (an upload's source) are endpoints.files.LocalFiles.

Both ends being descriptors is what lets send.py move the bytes with copy_file_range (the fast path).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import io
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from transfers.engine import hashing
from transfers.engine.endpoints.base import PartialBusy, PartialFile, Stamp, StoredFile, VerifyFailed, stamp
from transfers.engine.localfs import Folder, LocalTree, Place
from transfers.engine.paths import PARTIAL_SUFFIX, PathRefused, clean_server_path

__all__ = [
    "FILE_MODE",
    "FOLDER_MODE",
    "PARTIAL_SUFFIX",
    "LocalFolder",
    "LocalPartial",
    "LocalSourceFile",
    "LocalStorage",
    "stamp",
]

FILE_MODE, FOLDER_MODE = 0o644, 0o755  # what lands at the destination, whatever the source's mode or the umask


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_FSYNC_AT_LEAST = 4 << 20  # per-file fsync costs ~0.3 ms here: worth it only for files this big


class LocalPartial(io.FileIO):
    """A partial file on this machine: a plain unbuffered file, with bytes at positions (pwrite/preadv)."""

    def write_at(self, data: bytes | memoryview, position: int) -> int:
        return os.pwrite(self.fileno(), data, position)

    def read_at(self, buffer: memoryview, position: int) -> int:
        return os.preadv(self.fileno(), [buffer], position)


class LocalSourceFile:
    """A local file opened for reading (the descriptor a safe open gave), closed by close()."""

    __slots__ = ("fd", "info")

    def __init__(self, fd: int, info: os.stat_result) -> None:
        self.fd, self.info = fd, info

    def fileno(self) -> int:
        return self.fd

    def read_at(self, buffer: memoryview, position: int) -> int:
        return os.preadv(self.fd, [buffer], position)

    def now(self) -> os.stat_result:
        return os.fstat(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class _Names:
    """Where one relative path lives: its folder (absolute, for the tree's walk) and its three names in it."""

    __slots__ = ("final", "folder", "marker", "partial", "relative")

    def __init__(self, root: str, relative: str) -> None:
        folder, _, name = relative.rpartition("/")
        self.relative = relative
        self.folder = f"{root}/{folder}" if folder else root
        self.final, self.partial, self.marker = name, f".{name}{PARTIAL_SUFFIX}", f".{name}{PARTIAL_SUFFIX}.ranges"


class LocalFolder:
    """A folder on this machine, by relative path: a farm account's storage area, a download's local folder.

    `label` names it for people (`input storage of farm account "x"`; default: its path); `where` names
    it in error messages ("no space left on the farm storage writing D/a.exr"). Every file operation
    walks from the root's descriptor without following any symlink (engine.localfs), so a folder
    swapped for a symlink after a check cannot redirect a read or a write. The descriptors are opened
    on first use and released by close(); the folder may be used again after.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        label: str | None = None,
        where: str = "the farm storage",
        allowed_roots: Sequence[str | os.PathLike[str]] | None = None,
    ) -> None:
        self._allowed = list(allowed_roots) if allowed_roots is not None else None
        if self._allowed is not None:
            fd = self._walk_to_root(root)
            try:
                self.root = Path(os.readlink(f"/proc/self/fd/{fd}"))
            finally:
                os.close(fd)
        else:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
        self.label = label or str(self.root)
        self.where = where
        self._root = str(self.root)
        self._tree: LocalTree | None = None
        self._opening = threading.Lock()
        self._names: dict[str, _Names] = {}
        self._places: dict[str, Place] = {}  # folder -> parsed against the tree's root (the tree's lifetime)
        self._marked: set[str] = set()  # paths this instance wrote a range marker for

    def _walk_to_root(self, root: str | os.PathLike[str]) -> int:
        """A descriptor of `root`, walked from an allowed root without following symlinks (made if missing)."""
        assert self._allowed is not None
        with LocalTree(self._allowed) as allowed, allowed.folder(os.path.abspath(root), create=True) as fd:
            return os.dup(fd)

    def __enter__(self) -> LocalFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._opening:
            tree, self._tree = self._tree, None
            self._places = {}  # they belong to the tree
        if tree is not None:
            tree.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def tree(self) -> LocalTree:
        tree = self._tree
        if tree is not None:
            return tree
        with self._opening:
            if self._tree is None:
                self._tree = self._open_tree()
            return self._tree

    def _open_tree(self) -> LocalTree:
        if self._allowed is None:
            self.root.mkdir(parents=True, exist_ok=True)  # removed since it was made: make it again
        tree = LocalTree([self.root])
        try:
            with tree.folder(self._root) as fd:
                held = os.fstat(fd)
            if self._allowed is not None:  # the root must still be the folder found below an allowed root
                walked = self._walk_to_root(self.root)
                try:
                    found = os.fstat(walked)
                finally:
                    os.close(walked)
                if (found.st_dev, found.st_ino) != (held.st_dev, held.st_ino):
                    raise PathRefused(f"local folder {self._root!r} was replaced while it was opened")
        except BaseException:
            tree.close()
            raise
        return tree

    def _where(self, path: str) -> _Names:
        """Where a relative path lives (a small cache: one send asks ~7 times); raises PathRefused."""
        hit = self._names.get(path)
        if hit is not None:
            return hit
        names = _Names(self._root, clean_server_path(path))
        if len(self._names) >= 1024:
            self._names.clear()
        self._names[path] = names
        return names

    def _hold(self, tree: LocalTree, names: _Names, *, create: bool = False) -> Folder:
        return tree.hold(self._place(tree, names.folder), create=create)

    def _place(self, tree: LocalTree, folder: str) -> Place:
        place = self._places.get(folder)
        if place is None:
            place = tree.place(folder)
            if len(self._places) >= 1024:
                self._places.clear()
            self._places[folder] = place
        return place

    def native_path(self, path: str) -> Path | None:
        """Where the final file lives on this machine's disk."""
        return self.root / self._where(path).relative

    def _lstat(self, names: _Names, name: str) -> os.stat_result | None:
        """lstat of a name in the path's folder; None when it or its folder is missing."""
        tree = self.tree()
        try:
            folder = self._hold(tree, names)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return os.stat(name, dir_fd=folder.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            tree.let_go(folder)

    def has(self, path: str) -> bool:
        """A regular file is stored at `path` (cheaper than stat: no record built)."""
        names = self._where(path)
        info = self._lstat(names, names.final)
        return info is not None and stat.S_ISREG(info.st_mode)

    def stat(self, path: str) -> StoredFile | None:
        names = self._where(path)
        info = self._lstat(names, names.final)
        if info is None or not stat.S_ISREG(info.st_mode):
            return None
        return StoredFile(names.relative, info.st_size, info.st_mtime_ns)

    def names(self, folder: str) -> set[str]:
        """Names of the files stored in a folder (one listing instead of a stat per file)."""
        base = f"{self._root}/{clean_server_path(folder)}" if folder.strip("/") else self._root
        tree = self.tree()
        try:
            held = tree.hold(self._place(tree, base))
        except (FileNotFoundError, NotADirectoryError):
            return set()
        try:
            with os.scandir(held.fd) as entries:
                return {e.name for e in entries if e.is_file(follow_symlinks=False) and PARTIAL_SUFFIX not in e.name}
        finally:
            tree.let_go(held)

    def list(self, prefix: str = "") -> Iterator[StoredFile]:
        """Every stored file below `prefix`, sorted; symlinks and the endpoint's own files are left out."""
        relative = clean_server_path(prefix) if prefix.strip("/") else ""
        tree = self.tree()
        try:
            held = tree.hold(tree.place(f"{self._root}/{relative}" if relative else self._root))
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            for folder, dirs, files, fd in os.fwalk(".", dir_fd=held.fd):
                dirs.sort()
                base = "/".join(part for part in (relative, folder[2:]) if part)
                for name in sorted(files):
                    if PARTIAL_SUFFIX in name:
                        continue  # partial files and their range markers
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode):
                        yield StoredFile(f"{base}/{name}" if base else name, info.st_size, info.st_mtime_ns)
        finally:
            tree.let_go(held)

    def partial_size(self, path: str) -> int:
        names = self._where(path)
        info = self._lstat(names, names.partial)
        return info.st_size if info is not None else 0

    def open_partial(self, path: str, offset: int, *, size: int | None = None) -> LocalPartial:
        """The partial file, locked for this writer, cut to `offset` and positioned there.

        `size` instead sizes it for parallel ranges, keeping what it holds. Raises PartialBusy when
        another writer holds it. The lock lasts until the handle is closed (after finalize).
        """
        names = self._where(path)
        tree = self.tree()
        # Never O_TRUNC: only the lock holder may cut it. O_NOFOLLOW: never write through a symlink.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = self._open_partial_fd(tree, names, flags)
        except FileNotFoundError:  # its folder was removed since it was walked: walk (and make) it again
            tree.forget(names.folder)
            fd = self._open_partial_fd(tree, names, flags)
        handle = LocalPartial(fd, "r+")  # the caller closes it
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PartialBusy(errno.EBUSY, f"{path} is being written by another transfer") from None
            # Cut or size it only when it is not that size already: on ext4 a truncate to 0 (the usual
            # case: a fresh, empty partial) makes close() start the file's writeback at once
            # (auto_da_alloc), a disk write per small file that syncfs would otherwise do in bulk.
            held = os.lseek(fd, 0, os.SEEK_END)
            wanted = offset if size is None else size
            if held != wanted:
                handle.truncate(wanted)
            handle.seek(offset)
        except BaseException:
            handle.close()
            raise
        return handle

    def _open_partial_fd(self, tree: LocalTree, names: _Names, flags: int) -> int:
        folder = self._hold(tree, names, create=True)
        try:
            return os.open(names.partial, flags, FILE_MODE, dir_fd=folder.fd)
        finally:
            tree.let_go(folder)

    def partial_digest(self, path: str, start: int, length: int) -> bytes:
        names = self._where(path)
        fd = self._open_in(names, names.partial, os.O_RDONLY)
        try:
            return hashing.hash_range(fd, start, length)
        finally:
            os.close(fd)

    def _open_in(self, names: _Names, name: str, flags: int, mode: int = FILE_MODE) -> int:
        tree = self.tree()
        folder = self._hold(tree, names, create=bool(flags & os.O_CREAT))
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=folder.fd)
        finally:
            tree.let_go(folder)

    def finalize(self, path: str, *, size: int, checksum: str, handle: PartialFile, verified: Stamp | None = None) -> None:
        """Verify what `handle` (the locked partial) holds, then rename it into place (the commit).

        `verified`: the writer already read every byte back from the partial file and checked it
        (send.py does, chunk by chunk while the data is still in the page cache), and this is the
        file's stamp just after. If the file still has that stamp, nothing touched it since and the
        re-hash is skipped; any change (ctime moves on every write) means a full re-hash here.
        """
        names = self._where(path)
        held = os.fstat(handle.fileno())
        tree = self.tree()
        folder = self._hold(tree, names)
        try:
            try:
                at_path = os.stat(names.partial, dir_fd=folder.fd, follow_symlinks=False)
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
            os.replace(names.partial, names.final, src_dir_fd=folder.fd, dst_dir_fd=folder.fd)
            try:
                landed = os.stat(names.final, dir_fd=folder.fd, follow_symlinks=False)
            except FileNotFoundError:
                landed = None
            if landed is None or (landed.st_dev, landed.st_ino) != (held.st_dev, held.st_ino):
                # Something else took the final name at once (a second writer of the same path, a
                # bookkeeping name of ours reused): never call that file done.
                raise VerifyFailed(f"{path}: another file took its place just after it was renamed into place")
            if hashing.range_size_of(checksum) is not None or path in self._marked:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(names.marker, dir_fd=folder.fd)
        finally:
            tree.let_go(folder)

    def _unlink(self, names: _Names, *targets: str) -> None:
        tree = self.tree()
        try:
            folder = self._hold(tree, names)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            for name in targets:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=folder.fd)
        finally:
            tree.let_go(folder)

    def discard_partial(self, path: str) -> None:
        names = self._where(path)
        self._unlink(names, names.partial, names.marker)

    def read_marker(self, path: str) -> bytes | None:
        """What a parallel-range send recorded about its finished ranges (for resume)."""
        names = self._where(path)
        try:
            fd = self._open_in(names, names.marker, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        with open(fd, "rb") as handle:
            return handle.read()

    def write_marker(self, path: str, data: bytes) -> None:
        self._marked.add(path)
        names = self._where(path)
        tree = self.tree()
        folder = self._hold(tree, names, create=True)
        try:
            temporary = names.marker + ".tmp"
            fd = os.open(
                temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE, dir_fd=folder.fd
            )
            with open(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, names.marker, src_dir_fd=folder.fd, dst_dir_fd=folder.fd)
        finally:
            tree.let_go(folder)

    def remove(self, path: str) -> None:
        names = self._where(path)
        self._unlink(names, names.final)

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

    # --- as a source ------------------------------------------------------------------------------

    def locate(self, path: str) -> tuple[str, os.stat_result | None]:
        names = self._where(path)
        return names.relative, self._lstat(names, names.final)

    def open_source(self, located: str) -> LocalSourceFile:
        return LocalSourceFile(*self.tree().open_file(f"{self._root}/{self._where(located).relative}"))

    def stat_source(self, located: str) -> os.stat_result:
        names = self._where(located)
        info = self._lstat(names, names.final)
        if info is None:
            raise FileNotFoundError(errno.ENOENT, "No such file", located)
        return info


LocalStorage = LocalFolder  # its name before endpoints: the farm's storage areas


def _fsync(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # some filesystems refuse fsync; nothing to flush there
            raise
