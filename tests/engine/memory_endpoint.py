"""A transport without descriptors, for tests: files in memory, as a remote endpoint (SFTP, say) would be
to the engine. It proves the interface is enough: nothing here has a `fileno()`, so send.py moves every
byte through `read_at` / `write_at` and finalize re-hashes what arrived.
"""

from __future__ import annotations

import errno
import io
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import xxhash

from transfers.engine import hashing
from transfers.engine.endpoints import PartialBusy, StoredFile, VerifyFailed
from transfers.engine.endpoints.base import PartialFile, Stamp
from transfers.engine.paths import clean_server_path


@dataclass
class _Stored:
    data: bytes
    mtime_ns: int
    inode: int

    def info(self) -> os.stat_result:
        seconds = self.mtime_ns // 10**9
        fields = (0o100644, self.inode, 1, 1, 0, 0, len(self.data), seconds, seconds, seconds)
        return os.stat_result(fields, {"st_mtime_ns": self.mtime_ns, "st_ctime_ns": self.mtime_ns})


class MemoryPartial:
    def __init__(self, endpoint: MemoryEndpoint, path: str, buffer: bytearray) -> None:
        self.endpoint, self.path, self.buffer = endpoint, path, buffer
        self.closed = False

    def write_at(self, data: bytes | memoryview, position: int) -> int:
        end = position + len(data)
        if len(self.buffer) < end:
            self.buffer.extend(bytes(end - len(self.buffer)))
        self.buffer[position:end] = data
        return len(data)

    def read_at(self, buffer: memoryview, position: int) -> int:
        chunk = self.buffer[position : position + len(buffer)]
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def truncate(self, size: int | None = None, /) -> int:
        size = len(self.buffer) if size is None else size
        if size < len(self.buffer):
            del self.buffer[size:]
        else:
            self.buffer.extend(bytes(size - len(self.buffer)))
        return size

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a file in memory has no descriptor")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with self.endpoint.lock:
                self.endpoint.writers.discard(self.path)

    def __enter__(self) -> MemoryPartial:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class MemorySource:
    def __init__(self, endpoint: MemoryEndpoint, path: str, stored: _Stored) -> None:
        self.endpoint, self.path, self.stored, self.info = endpoint, path, stored, stored.info()

    def read_at(self, buffer: memoryview, position: int) -> int:
        chunk = self.stored.data[position : position + len(buffer)]
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def now(self) -> os.stat_result:
        return self.stored.info()

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a file in memory has no descriptor")

    def close(self) -> None:
        pass


class MemoryEndpoint:
    def __init__(self, *, label: str = "memory", where: str = "the memory store", capacity: int = 1 << 40) -> None:
        self.label, self.where, self.capacity = label, where, capacity
        self.files: dict[str, _Stored] = {}
        self.partials: dict[str, bytearray] = {}
        self.markers: dict[str, bytes] = {}
        self.writers: set[str] = set()
        self.lock = threading.Lock()
        self._inodes = 0

    def put(self, path: str, data: bytes) -> None:
        """A file written at the far end (a farm rendering a frame), replacing any earlier one."""
        with self.lock:
            self._inodes += 1
            self.files[clean_server_path(path)] = _Stored(data, time.time_ns(), self._inodes)

    # destination

    def stat(self, path: str) -> StoredFile | None:
        key = clean_server_path(path)
        stored = self.files.get(key)
        return StoredFile(key, len(stored.data), stored.mtime_ns) if stored else None

    def has(self, path: str) -> bool:
        return clean_server_path(path) in self.files

    def names(self, folder: str) -> set[str]:
        prefix = f"{clean_server_path(folder)}/" if folder.strip("/") else ""
        return {key[len(prefix) :] for key in self.files if key.startswith(prefix) and "/" not in key[len(prefix) :]}

    def list(self, prefix: str = "") -> Iterator[StoredFile]:
        start = f"{clean_server_path(prefix)}/" if prefix.strip("/") else ""
        for key in sorted(self.files):
            if key.startswith(start):
                yield StoredFile(key, len(self.files[key].data), self.files[key].mtime_ns)

    def partial_size(self, path: str) -> int:
        return len(self.partials.get(clean_server_path(path), b""))

    def open_partial(self, path: str, offset: int, *, size: int | None = None) -> PartialFile:
        key = clean_server_path(path)
        with self.lock:
            if key in self.writers:
                raise PartialBusy(errno.EBUSY, f"{path} is being written by another transfer")
            self.writers.add(key)
            buffer = self.partials.setdefault(key, bytearray())
        handle = MemoryPartial(self, key, buffer)
        handle.truncate(offset if size is None else size)
        return handle

    def partial_digest(self, path: str, start: int, length: int) -> bytes:
        return xxhash.xxh3_128(bytes(self.partials[clean_server_path(path)][start : start + length])).digest()

    def finalize(self, path: str, *, size: int, checksum: str, handle: PartialFile, verified: Stamp | None = None) -> None:
        key = clean_server_path(path)
        buffer = self.partials.get(key)
        if buffer is None or not isinstance(handle, MemoryPartial) or handle.buffer is not buffer:
            raise VerifyFailed(f"{path}: the partial file was replaced while it was being written")
        if len(buffer) != size:
            self.discard_partial(path)
            raise VerifyFailed(f"{path}: {len(buffer)} bytes arrived, {size} were sent")
        arrived = _checksum(bytes(buffer), like=checksum)  # no stamp to trust here: always re-hashed
        if arrived != checksum:
            self.discard_partial(path)
            raise VerifyFailed(f"{path}: checksum at the destination {arrived} differs from the sent {checksum}")
        self.put(key, bytes(buffer))
        with self.lock:
            self.partials.pop(key, None)
            self.markers.pop(key, None)

    def discard_partial(self, path: str) -> None:
        key = clean_server_path(path)
        self.partials.pop(key, None)
        self.markers.pop(key, None)

    def read_marker(self, path: str) -> bytes | None:
        return self.markers.get(clean_server_path(path))

    def write_marker(self, path: str, data: bytes) -> None:
        self.markers[clean_server_path(path)] = data

    def remove(self, path: str) -> None:
        self.files.pop(clean_server_path(path), None)

    def free_space(self) -> int:
        return self.capacity - sum(len(f.data) for f in self.files.values()) - sum(map(len, self.partials.values()))

    def sync(self) -> None:
        pass

    def native_path(self, path: str) -> Path | None:
        clean_server_path(path)
        return None

    # source

    def locate(self, path: str) -> tuple[str, os.stat_result | None]:
        key = clean_server_path(path)
        stored = self.files.get(key)
        return key, stored.info() if stored else None

    def open_source(self, located: str) -> MemorySource:
        key = clean_server_path(located)
        stored = self.files.get(key)
        if stored is None:
            raise FileNotFoundError(errno.ENOENT, "No such file", located)
        return MemorySource(self, key, stored)

    def stat_source(self, located: str) -> os.stat_result:
        stored = self.files.get(clean_server_path(located))
        if stored is None:
            raise FileNotFoundError(errno.ENOENT, "No such file", located)
        return stored.info()

    def close(self) -> None:
        pass


def _checksum(data: bytes, *, like: str) -> str:
    range_size = hashing.range_size_of(like)
    if range_size is None:
        return hashing.plain(xxhash.xxh3_128(data).hexdigest())
    return hashing.ranged(
        range_size, (xxhash.xxh3_128(data[s : s + range_size]).digest() for s in range(0, len(data), range_size))
    )
