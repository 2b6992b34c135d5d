"""The SFTP transport's open files: a partial being written, a source being read (sftp.py opens them).

A file may be open on several of the session's connections at once: the first for the thread that
opened it, the next ones for other threads as they come (a large file's parallel ranges), each thread
keeping to its own connection so its requests stay in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import stat
import threading
from types import TracebackType
from typing import Any

import asyncssh
import xxhash

from transfers.engine import hashing
from transfers.engine.endpoints.base import Stamp
from transfers.engine.endpoints.sftp_session import ConnectFailed, Session, as_os_error

__all__ = ["BUSY", "BUSY_LOCK", "Handles", "SftpPartial", "SftpSource", "feed", "read_checksum", "regular", "stat_of"]

BUSY: set[tuple[str, int, str, str]] = set()  # (host, port, root, path) of the partials written in this process
BUSY_LOCK = threading.Lock()
_TOKENS = itertools.count(1)
# send.py writes, then reads back, a chunk of this size at a time (asyncssh pipelines each in requests of the
# server's largest size): one round trip per chunk each way, 1 MiB chunks paid it 8x as often
PREFERRED_CHUNK = 8 << 20
RECONNECTS = 3  # times in a row an operation on an open file is repeated on a new connection after a lost one


def _lost(error: OSError) -> bool:
    return isinstance(error, ConnectionError) and not isinstance(error, ConnectFailed)


def stat_of(attrs: asyncssh.SFTPAttrs) -> os.stat_result:
    mtime = int(attrs.mtime or 0)
    mtime_ns = mtime * 10**9 + int(attrs.mtime_ns or 0)
    fields = (attrs.permissions or 0, 0, 0, 1, attrs.uid or 0, attrs.gid or 0, attrs.size or 0, mtime, mtime, mtime)
    return os.stat_result(fields, {"st_mtime_ns": mtime_ns, "st_ctime_ns": mtime_ns, "st_atime_ns": mtime_ns})


def regular(attrs: asyncssh.SFTPAttrs | None) -> bool:
    return attrs is not None and stat.S_ISREG(attrs.permissions or 0)


class Handles:
    """One remote file opened on one or more of the pool's connections: the first for the thread that
    opened it, the next ones for other threads as they come (a large file's ranges)."""

    def __init__(
        self, session: Session, path: str, pflags: int, first: asyncssh.SFTPClientFile, *, spread: bool, block_size: int
    ) -> None:
        self.session, self.path, self.pflags, self.spread, self.block_size = session, path, pflags, spread, block_size
        self._files: dict[int, asyncssh.SFTPClientFile] = {0: first}
        self._slot_of: dict[int, int] = {threading.get_ident(): 0}
        self._lock = threading.Lock()
        self.closed = False

    def _slot(self) -> int:
        if not self.spread:
            return 0
        me = threading.get_ident()
        with self._lock:
            slot = self._slot_of.get(me)
            if slot is None:
                slot = self._slot_of[me] = len(self._slot_of) % self.session.size
            return slot

    async def _file(self, slot: int) -> asyncssh.SFTPClientFile:
        file = self._files.get(slot)
        if file is None:
            file = await self.session.guarded(
                slot, lambda sftp: sftp.open(self.path, self.pflags, encoding=None, block_size=self.block_size)
            )
            self._files[slot] = file
        return file

    def call(self, work: Any) -> Any:
        """`await work(file)` on this thread's connection, errors as OSErrors.

        Every call is positional (a read or a write at an offset, a stat, a truncate to a size), so
        repeating it is harmless: when the connection is lost, the file is opened again on a new one and
        the call repeated, up to RECONNECTS times in a row. A cut costs the request in flight, not the
        file (a write that did land before the cut is written again with the same bytes; send.py reads
        every byte back and finalize checks size and xxh3 before the rename)."""
        if self.closed:
            raise ValueError("I/O operation on a closed SFTP file")
        slot = self._slot()

        async def go() -> Any:
            for attempt in itertools.count():
                try:
                    file = await self._file(slot)
                    return await work(file)
                except (asyncssh.Error, OSError, EOFError) as exc:
                    error = as_os_error(exc)
                    if not _lost(error) or attempt >= RECONNECTS or self.closed:
                        raise error from None
                    self._files.pop(slot, None)  # the handle died with its connection; the next _file opens it again
                    await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
            raise AssertionError("unreachable")

        return self.session.run(go())

    def read_at(self, buffer: memoryview, position: int) -> int:
        data: bytes = self.call(lambda file: file.read(len(buffer), position))
        buffer[: len(data)] = data
        return len(data)

    def fstat(self) -> asyncssh.SFTPAttrs:
        return self.call(lambda file: file.stat())  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        files, self._files = list(self._files.values()), {}

        async def shut() -> None:
            for file in files:
                with contextlib.suppress(asyncssh.Error, OSError, EOFError):  # dead connection: the handle is gone
                    await file.close()

        with contextlib.suppress(OSError):
            self.session.run(shut(), timeout=10)


class SftpPartial:
    """A partial file on the server, held for this writer (within this process) until closed."""

    preferred_chunk = PREFERRED_CHUNK

    def __init__(self, relative: str, handles: Handles, key: tuple[str, int, str, str]) -> None:
        self.relative, self.handles, self._key = relative, handles, key
        self.token = next(_TOKENS)
        self.writes = 0

    def write_at(self, data: bytes | memoryview, position: int) -> int:
        payload = bytes(data)
        self.writes += 1
        self.handles.call(lambda file: file.write(payload, position))
        return len(payload)

    def read_at(self, buffer: memoryview, position: int) -> int:
        return self.handles.read_at(buffer, position)

    def truncate(self, size: int | None = None, /) -> int:
        if size is None:
            size = int(self.handles.fstat().size or 0)
        self.writes += 1
        self.handles.call(lambda file: file.truncate(size))
        return size

    def stamp(self) -> Stamp:
        """What the file is now, as seen through this handle: its size and mtime, this handle and its
        count of writes. send.py takes it after reading every byte back; finalize compares."""
        attrs = self.handles.fstat()
        return (int(attrs.size or 0), int(attrs.mtime or 0), self.token, self.writes)

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a file on an SFTP server has no descriptor")

    def close(self) -> None:
        if self.handles.closed:
            return
        try:
            self.handles.close()
        finally:
            with BUSY_LOCK:
                BUSY.discard(self._key)

    def __enter__(self) -> SftpPartial:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class SftpSource:
    """A file on the server opened for reading (from several threads: a download's ranges)."""

    preferred_chunk = PREFERRED_CHUNK

    def __init__(self, handles: Handles, info: os.stat_result) -> None:
        self.handles, self.info = handles, info

    def read_at(self, buffer: memoryview, position: int) -> int:
        return self.handles.read_at(buffer, position)

    def now(self) -> os.stat_result:
        return stat_of(self.handles.fstat())

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a file on an SFTP server has no descriptor")

    def close(self) -> None:
        self.handles.close()


def feed(digest: xxhash.xxh3_128, handles: Handles, start: int, length: int, chunk: int = 4 << 20) -> None:
    buffer = memoryview(bytearray(min(chunk, max(length, 1))))
    position, end = start, start + length
    while position < end:
        got = handles.read_at(buffer[: min(chunk, end - position)], position)
        if not got:
            break
        digest.update(buffer[:got])
        position += got


def read_checksum(handles: Handles, size: int, *, like: str) -> str:
    """What the partial holds, read back from the server, in the scheme of `like`."""
    range_size = hashing.range_size_of(like)
    if range_size is None:
        digest = xxhash.xxh3_128()
        feed(digest, handles, 0, size)
        return hashing.plain(digest.hexdigest())
    parts = []
    for start in range(0, size, range_size):
        part = xxhash.xxh3_128()
        feed(part, handles, start, min(range_size, size - start))
        parts.append(part.digest())
    return hashing.ranged(range_size, parts)
