"""The SFTP transport: a folder on an SSH server, as a destination and as a source (asyncssh).

Files by relative path under `root` (absolute on the server), with the local transport's conventions:
writes go to `.<name>.rvpart` (mode 0644, folders 0755), resume at the remote partial's size, and are
renamed into place by `finalize` only after their size and xxh3 checksum were verified, with the
posix-rename extension (an atomic replace; without it, a file already in place is never overwritten).
A parallel-range send's marker is `.<name>.rvpart.ranges`, written beside it and renamed into place.

Links: SFTP has no openat, so before each operation the folder is resolved by the server (realpath)
and must be itself below the resolved root: a folder that is, or passes through, a symlink is refused
(PathRefused), and a file or partial that is a symlink is never opened. A link swapped in between the
check and the open is not caught (SFTP offers no way to), unlike the local transport's descriptor walk.

Connections (sftp_session.Session): one carries the files in parallel; a partial sized for ranges (or
a source read from several threads) opens the file on the pool's other connections too, one per
thread. Every error is an OSError (a lost connection: ConnectionError, which the runner retries; the
next call connects again). One writer per partial is enforced within this process only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncssh
import xxhash

from transfers.engine import hashing
from transfers.engine.endpoints.base import PartialBusy, PartialFile, Stamp, StoredFile, VerifyFailed
from transfers.engine.endpoints.sftp_files import (
    BUSY,
    BUSY_LOCK,
    Handles,
    SftpPartial,
    SftpSource,
    feed,
    read_checksum,
    regular,
    stat_of,
)
from transfers.engine.endpoints.sftp_session import (
    DEFAULT_CIPHERS,
    ConnectFailed,
    ProbeFailed,
    ProbeResult,
    Session,
    key_fingerprint,
    probe,
)
from transfers.engine.localfs import NotAFile
from transfers.engine.paths import PARTIAL_SUFFIX, PathRefused, clean_server_path

__all__ = ["FILE_MODE", "FOLDER_MODE", "ConnectFailed", "ProbeFailed", "ProbeResult", "SftpFolder", "key_fingerprint", "probe"]

FILE_MODE, FOLDER_MODE = 0o644, 0o755
_FSYNC_AT_LEAST = 4 << 20  # as the local transport: only big files pay a flush (when the server offers fsync)
_READ, _WRITE, _CREATE = asyncssh.FXF_READ, asyncssh.FXF_WRITE, asyncssh.FXF_CREAT


@dataclass(frozen=True)
class _Names:
    relative: str  # clean, `/`-separated
    folder: str  # relative folder ("" for the root)
    final: str  # names in that folder
    partial: str
    marker: str


class SftpFolder:
    """A folder on an SFTP server, by relative path: a farm account's storage, a download's source.

    `host_key`: the pinned host key ("ssh-ed25519 AAAA..."); empty: the first key seen is accepted,
    then shown as `seen_host_key` / `fingerprint` for the caller to pin. `private_key` is the key's
    text (OpenSSH or PEM), never a path. Nothing connects before the first operation.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int = 22,
        username: str,
        root: str,
        password: str | None = None,
        private_key: str | None = None,
        host_key: str = "",
        label: str | None = None,
        where: str = "the SFTP server",
        connections: int = 4,
        keepalive_interval: float = 15,
        connect_timeout: float = 10,
        op_timeout: float = 120,
        block_size: int = -1,
        ciphers: tuple[str, ...] = DEFAULT_CIPHERS,
    ) -> None:
        if not isinstance(root, str) or not root.startswith("/") or "\x00" in root:
            raise ValueError(f"the SFTP root folder {root!r} must be an absolute path")
        if any(part == ".." for part in root.split("/")):
            raise ValueError(f"the SFTP root folder {root!r} contains '..'")
        self.session = Session(
            host=host,
            port=port,
            username=username,
            password=password,
            private_key=private_key,
            host_key=host_key,
            connections=connections,
            keepalive_interval=keepalive_interval,
            connect_timeout=connect_timeout,
            op_timeout=op_timeout,
            ciphers=ciphers,
        )
        self.root = root.rstrip("/") or "/"
        self.label = label or f"{username}@{host}:{self.root}"
        self.where = where
        self.block_size = block_size
        self._real_root: str | None = None
        self._names: dict[str, _Names] = {}
        self._supports_posix_rename: bool | None = None
        self._marked: set[str] = set()  # paths this instance wrote a range marker for

    @property
    def parallel_ranges(self) -> int:
        """send.py sends (or reads) a large file's ranges at least this many at once: one per connection."""
        return self.session.size

    def __repr__(self) -> str:
        s = self.session.settings
        return f"<SftpFolder {s.username}@{s.host}:{s.port}{self.root}>"

    @property
    def seen_host_key(self) -> str | None:
        return self.session.seen_host_key

    @property
    def fingerprint(self) -> str | None:
        return self.session.fingerprint

    def __enter__(self) -> SftpFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.session.close()

    # --- names and folder checks ------------------------------------------------------------------

    def _where(self, path: str) -> _Names:
        hit = self._names.get(path)
        if hit is not None:
            return hit
        relative = clean_server_path(path)
        folder, _, name = relative.rpartition("/")
        names = _Names(relative, folder, name, f".{name}{PARTIAL_SUFFIX}", f".{name}{PARTIAL_SUFFIX}.ranges")
        if len(self._names) >= 1024:
            self._names.clear()
        self._names[path] = names
        return names

    async def _root(self, sftp: asyncssh.SFTPClient) -> str:
        if self._real_root is None:
            try:
                attrs = await sftp.stat(self.root)
            except asyncssh.SFTPNoSuchFile:
                raise FileNotFoundError(
                    errno.ENOENT, f"the folder {self.root} does not exist on {self.session.address}"
                ) from None
            if not stat.S_ISDIR(attrs.permissions or 0):
                raise NotADirectoryError(errno.ENOTDIR, f"{self.root} on {self.session.address} is not a folder")
            self._real_root = await sftp.realpath(self.root)
        return self._real_root

    async def _folder(self, sftp: asyncssh.SFTPClient, folder: str, *, create: bool = False) -> str | None:
        """The absolute path of a relative folder, checked to be itself (no symlink on the way);
        None when it is missing (made when `create`). Raises PathRefused."""
        root = await self._root(sftp)
        if not folder:
            return root
        expected = f"{root}/{folder}"
        try:
            real = await sftp.realpath(expected)
        except asyncssh.SFTPNoSuchFile:
            real = None  # a folder on the way is missing
        if real is not None and real != expected:
            raise PathRefused(f"server path {folder!r} leads out of the storage root (a link)")
        try:
            attrs = await sftp.lstat(expected)
        except asyncssh.SFTPNoSuchFile:
            attrs = None
        if attrs is not None:
            if stat.S_ISDIR(attrs.permissions or 0):
                return expected
            raise NotADirectoryError(errno.ENOTDIR, f"{folder} is a file on {self.where}, not a folder")
        if not create:
            return None
        current = root
        for part in folder.split("/"):
            current = f"{current}/{part}"
            try:
                await sftp.mkdir(current, asyncssh.SFTPAttrs(permissions=FOLDER_MODE))
                await sftp.chmod(current, FOLDER_MODE)  # the server's umask may have cut it
            except asyncssh.SFTPError:
                attrs = await sftp.lstat(current)  # raced with another writer, or already there
                if stat.S_ISLNK(attrs.permissions or 0):
                    raise PathRefused(f"server path {folder!r} leads out of the storage root (a link)") from None
                if not stat.S_ISDIR(attrs.permissions or 0):
                    raise NotADirectoryError(errno.ENOTDIR, f"{folder} is a file on {self.where}, not a folder") from None
        return expected

    def _run(self, work: Any, index: int = 0) -> Any:
        return self.session.run(self.session.guarded(index, work))

    async def _lstat(self, sftp: asyncssh.SFTPClient, path: str) -> asyncssh.SFTPAttrs | None:
        try:
            return await sftp.lstat(path)
        except asyncssh.SFTPNoSuchFile:
            return None

    def _lstat_of(self, path: str, which: str) -> tuple[_Names, asyncssh.SFTPAttrs | None]:
        names = self._where(path)

        async def work(sftp: asyncssh.SFTPClient) -> asyncssh.SFTPAttrs | None:
            folder = await self._folder(sftp, names.folder)
            if folder is None:
                return None
            return await self._lstat(sftp, f"{folder}/{getattr(names, which)}")

        return names, self._run(work)

    # --- as a destination -------------------------------------------------------------------------

    def native_path(self, path: str) -> Path | None:
        self._where(path)
        return None

    def has(self, path: str) -> bool:
        return regular(self._lstat_of(path, "final")[1])

    def stat(self, path: str) -> StoredFile | None:
        names, attrs = self._lstat_of(path, "final")
        if attrs is None or not regular(attrs):
            return None
        return StoredFile(names.relative, int(attrs.size or 0), stat_of(attrs).st_mtime_ns)

    def names(self, folder: str) -> set[str]:
        relative = clean_server_path(folder) if folder.strip("/") else ""

        async def work(sftp: asyncssh.SFTPClient) -> set[str]:
            base = await self._folder(sftp, relative)
            if base is None:
                return set()
            return {
                str(entry.filename)
                async for entry in sftp.scandir(base)
                if regular(entry.attrs) and PARTIAL_SUFFIX not in entry.filename
            }

        return self._run(work)  # type: ignore[no-any-return]

    def list(self, prefix: str = "") -> Iterator[StoredFile]:
        """Every stored file below `prefix`, sorted as the local transport gives them; links are not followed."""
        relative = clean_server_path(prefix) if prefix.strip("/") else ""

        async def top(sftp: asyncssh.SFTPClient) -> str | None:
            return await self._folder(sftp, relative)

        base = self._run(top)
        if base is None:
            return
        yield from self._walk(base, relative)

    def _walk(self, absolute: str, relative: str) -> Iterator[StoredFile]:
        async def entries(sftp: asyncssh.SFTPClient) -> list[asyncssh.SFTPName]:
            return [entry async for entry in sftp.scandir(absolute)]

        try:
            found: list[asyncssh.SFTPName] = self._run(entries)
        except (FileNotFoundError, NotADirectoryError):
            return
        folders = []
        for entry in sorted(found, key=lambda e: str(e.filename)):
            name, mode = str(entry.filename), entry.attrs.permissions or 0
            if name in (".", "..") or PARTIAL_SUFFIX in name:
                continue
            path = f"{relative}/{name}" if relative else name
            if stat.S_ISREG(mode):
                yield StoredFile(path, int(entry.attrs.size or 0), stat_of(entry.attrs).st_mtime_ns)
            elif stat.S_ISDIR(mode):  # readdir's attributes are lstat's: a link to a folder is not one
                folders.append((f"{absolute}/{name}", path))
        for folder in folders:
            yield from self._walk(*folder)

    def partial_size(self, path: str) -> int:
        attrs = self._lstat_of(path, "partial")[1]
        return int(attrs.size or 0) if regular(attrs) and attrs is not None else 0

    def open_partial(self, path: str, offset: int, *, size: int | None = None) -> SftpPartial:
        """The partial file, held for this writer, cut to `offset` (or sized for ranges to `size`)."""
        names = self._where(path)
        s = self.session.settings
        key = (s.host, s.port, self.root, names.relative)
        with BUSY_LOCK:
            if key in BUSY:
                raise PartialBusy(errno.EBUSY, f"{path} is being written by another transfer")
            BUSY.add(key)
        flags = _READ | _WRITE | _CREATE

        async def work(sftp: asyncssh.SFTPClient) -> tuple[asyncssh.SFTPClientFile, str]:
            folder = await self._folder(sftp, names.folder, create=True)
            assert folder is not None
            partial = f"{folder}/{names.partial}"
            attrs = await self._lstat(sftp, partial)
            if attrs is not None and not regular(attrs):
                raise PathRefused(f"the partial file of {names.relative!r} is not a regular file (a link?)")
            file = await sftp.open(
                partial, flags, asyncssh.SFTPAttrs(permissions=FILE_MODE), encoding=None, block_size=self.block_size
            )
            try:
                if size is None:
                    await file.truncate(offset)
                elif (attrs.size if attrs is not None else 0) != size:
                    await file.truncate(size)
            except BaseException:
                await file.close()
                raise
            return file, partial

        try:
            file, partial = self._run(work)
        except BaseException:
            with BUSY_LOCK:
                BUSY.discard(key)
            raise
        return SftpPartial(
            names.relative,
            Handles(self.session, partial, _READ | _WRITE, file, spread=size is not None, block_size=self.block_size),
            key,
        )

    def partial_digest(self, path: str, start: int, length: int) -> bytes:
        names = self._where(path)
        handles = self._open_reading(names, names.partial, spread=False)[0]
        try:
            digest = xxhash.xxh3_128()
            feed(digest, handles, start, length)
            return digest.digest()
        finally:
            handles.close()

    def finalize(self, path: str, *, size: int, checksum: str, handle: PartialFile, verified: Stamp | None = None) -> None:
        """Verify what the partial holds (size, checksum), then rename it into place (the commit).

        `verified`: the writer read every byte back through this handle and checked it, and this was
        the handle's stamp just after (SftpPartial.stamp); the same stamp now skips the re-read.
        """
        names = self._where(path)
        if not isinstance(handle, SftpPartial) or handle.relative != names.relative or handle.handles.closed:
            raise VerifyFailed(f"{path}: the partial file was replaced while it was being written")
        attrs = handle.handles.fstat()
        held = int(attrs.size or 0)
        if held != size:
            self.discard_partial(path)
            raise VerifyFailed(f"{path}: {held} bytes arrived, {size} were sent")
        now = (held, int(attrs.mtime or 0), handle.token, handle.writes)
        arrived = checksum if verified is not None and verified == now else read_checksum(handle.handles, size, like=checksum)
        if arrived != checksum:
            self.discard_partial(path)
            raise VerifyFailed(f"{path}: checksum at the destination {arrived} differs from the sent {checksum}")
        if stat.S_IMODE(attrs.permissions or 0) != FILE_MODE:
            handle.handles.call(lambda file: file.chmod(FILE_MODE))
        if size >= _FSYNC_AT_LEAST:
            try:
                handle.handles.call(lambda file: file.fsync())
            except OSError as exc:
                if exc.errno != errno.EOPNOTSUPP:
                    raise
        ranged = hashing.range_size_of(checksum) is not None or names.relative in self._marked

        async def commit(sftp: asyncssh.SFTPClient) -> None:
            folder = await self._folder(sftp, names.folder)
            if folder is None:
                raise VerifyFailed(f"{path}: the folder of the partial file was removed while it was being written")
            partial, final = f"{folder}/{names.partial}", f"{folder}/{names.final}"
            if not regular(await self._lstat(sftp, partial)):
                raise VerifyFailed(f"{path}: the partial file was removed while it was being written")
            await self._rename(sftp, partial, final)
            landed = await self._lstat(sftp, final)
            if landed is None or not regular(landed) or int(landed.size or 0) != size:
                raise VerifyFailed(f"{path}: another file took its place just after it was renamed into place")
            if ranged:
                with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                    await sftp.remove(f"{folder}/{names.marker}")

        self._run(commit)

    async def _rename(self, sftp: asyncssh.SFTPClient, source: str, target: str) -> None:
        """An atomic replace (posix-rename@openssh.com); without it, a plain rename that never overwrites."""
        if self._supports_posix_rename is not False:
            try:
                await sftp.posix_rename(source, target)
                self._supports_posix_rename = True
                return
            except asyncssh.SFTPOpUnsupported:
                self._supports_posix_rename = False
        try:
            await sftp.rename(source, target)
        except asyncssh.SFTPError:
            if await self._lstat(sftp, target) is not None:
                raise OSError(
                    errno.EEXIST, f"{self.where} cannot replace files atomically (no posix-rename); {target} is in the way"
                ) from None
            raise

    def _unlink(self, path: str, *which: str) -> None:
        names = self._where(path)

        async def work(sftp: asyncssh.SFTPClient) -> None:
            folder = await self._folder(sftp, names.folder)
            if folder is None:
                return
            for template in which:
                target = f"{folder}/{getattr(names, template)}"
                try:
                    await sftp.remove(target)
                except asyncssh.SFTPNoSuchFile:
                    pass
                except asyncssh.SFTPError:
                    attrs = await self._lstat(sftp, target)
                    if attrs is not None:
                        raise

        self._run(work)

    def discard_partial(self, path: str) -> None:
        self._unlink(path, "partial", "marker")

    def remove(self, path: str) -> None:
        self._unlink(path, "final")

    def read_marker(self, path: str) -> bytes | None:
        names = self._where(path)

        async def work(sftp: asyncssh.SFTPClient) -> bytes | None:
            folder = await self._folder(sftp, names.folder)
            if folder is None:
                return None
            marker = f"{folder}/{names.marker}"
            if not regular(await self._lstat(sftp, marker)):
                return None
            try:
                file = await sftp.open(marker, "rb")
            except asyncssh.SFTPNoSuchFile:
                return None
            try:
                return cast(bytes, await file.read())
            finally:
                await file.close()

        return self._run(work)  # type: ignore[no-any-return]

    def write_marker(self, path: str, data: bytes) -> None:
        names = self._where(path)
        self._marked.add(names.relative)

        async def work(sftp: asyncssh.SFTPClient) -> None:
            folder = await self._folder(sftp, names.folder, create=True)
            assert folder is not None
            marker = f"{folder}/{names.marker}"
            temporary = marker + ".tmp"
            if await self._lstat(sftp, temporary) is not None:
                await sftp.remove(temporary)  # a link or a leftover: never written through
            async with await sftp.open(temporary, "wb", asyncssh.SFTPAttrs(permissions=FILE_MODE)) as file:
                await file.write(data)
            await self._rename(sftp, temporary, marker)

        self._run(work)

    def free_space(self) -> int:
        """Bytes free at the root (statvfs@openssh.com); NotImplementedError when the server cannot tell."""

        async def work(sftp: asyncssh.SFTPClient) -> int:
            try:
                vfs = await sftp.statvfs(await self._root(sftp))
            except asyncssh.SFTPOpUnsupported:
                raise NotImplementedError(f"{self.where} does not report its free space") from None
            return int(vfs.bavail * vfs.frsize)

        return self._run(work)  # type: ignore[no-any-return]

    def make_folder(self, folder: str) -> None:
        """Make a folder below the root (and the ones on its way), 0755; one that is there is kept, a link refused."""
        relative = clean_server_path(folder)

        async def work(sftp: asyncssh.SFTPClient) -> None:
            await self._folder(sftp, relative, create=True)

        self._run(work)

    def sync(self) -> None:
        """Nothing to do: big files were flushed at their commit (fsync@openssh.com), the server owns the rest."""

    # --- as a source ------------------------------------------------------------------------------

    def locate(self, path: str) -> tuple[str, os.stat_result | None]:
        """For planning: a connection that drops here shows again (retried) when the file is sent;
        one that cannot be made at all (refused login, wrong host key) stops the run, saying why."""
        names = self._where(path)
        try:
            attrs = self._lstat_of(path, "final")[1]
        except ConnectFailed:
            raise
        except OSError:
            return names.relative, None
        return names.relative, stat_of(attrs) if attrs is not None else None

    def _open_reading(self, names: _Names, template: str, *, spread: bool) -> tuple[Handles, asyncssh.SFTPAttrs]:
        async def work(sftp: asyncssh.SFTPClient) -> tuple[asyncssh.SFTPClientFile, str, asyncssh.SFTPAttrs]:
            folder = await self._folder(sftp, names.folder)
            if folder is None:
                raise FileNotFoundError(errno.ENOENT, "No such file", names.relative)
            target = f"{folder}/{template}"
            attrs = await self._lstat(sftp, target)
            if attrs is None:
                raise FileNotFoundError(errno.ENOENT, "No such file", names.relative)
            if stat.S_ISLNK(attrs.permissions or 0):
                raise PathRefused(f"server path {names.relative!r} is a link")
            if stat.S_ISDIR(attrs.permissions or 0):
                raise NotAFile(f"path on {self.where} is a folder, not a file: {names.relative}")
            if not stat.S_ISREG(attrs.permissions or 0):
                raise NotAFile(f"path on {self.where} is not a regular file: {names.relative}")
            file = await sftp.open(target, _READ, encoding=None, block_size=self.block_size)
            return file, target, await file.stat()

        file, target, attrs = self._run(work)
        return Handles(self.session, target, _READ, file, spread=spread, block_size=self.block_size), attrs

    def open_source(self, located: str) -> SftpSource:
        names = self._where(located)
        handles, attrs = self._open_reading(names, names.final, spread=True)
        return SftpSource(handles, stat_of(attrs))

    def stat_source(self, located: str) -> os.stat_result:
        names, attrs = self._lstat_of(located, "final")
        if attrs is None:
            raise FileNotFoundError(errno.ENOENT, "No such file", names.relative)
        return stat_of(attrs)
