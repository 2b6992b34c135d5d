"""The interface every endpoint offers the runner: a destination to write into, a source to read from.

An endpoint is one place files live: a local folder under an allowed root, a farm account's storage
area, later an SFTP server or the vendor's transmitter. The runner moves files from a source endpoint
to a destination endpoint and knows nothing else about either; an upload and a download are the same
run with the two ends swapped.

Destination, per file (paths are relative to the endpoint and `/`-separated, as `clean_server_path`
gives them; names holding `.rvpart` are refused, they are the endpoint's own):

* `partial_size` / `open_partial(path, offset)`: the partial file, locked for one writer, cut to the
  resume offset (or sized for parallel ranges). Never the final name.
* writing and reading back go through the PartialFile it returns (`write_at`, `read_at`: bytes at
  positions); `partial_digest` hashes a range of it (to trust a range an earlier attempt finished).
* `finalize` (the commit): verify size and checksum of what arrived, then rename it into place.
  Nothing ever appears at the final name before that. `verified` is the partial's stamp taken just
  after the writer read every byte back: its descriptor's, or what the handle's optional `stamp()`
  gives (a remote transport's, e.g. SFTP's: its size, mtime, the handle and its write count); the
  same stamp at finalize skips the re-read.
* `discard_partial`, `remove`, `stat`, `has`, `names`, `list`, `free_space`, `sync`.
* `read_marker` / `write_marker`: what a parallel-range send records beside its partial (for resume).
* `native_path`: where the final file lies on this machine's disk, or None for a remote transport;
  None turns off the kernel copy (`copy_file_range`) that the local transport gets.
* `part_size` (optional attribute): an object store (S3) that takes a file in parts of this size.
  send.py then sends every file in ranges of exactly one part, so that each range is verified and
  resumed on its own: such a store cannot read back, nor hash, bytes of an unfinished upload.

Source, per file: `locate` (for planning: which file a task names, and its stat; no I/O that could be
redirected matters here), `open_source` (the safe open: a SourceFile, what is actually read),
`stat_source` (is the file at that name still the one opened; its size for a retry).

The fast path: a PartialFile or SourceFile whose `fileno()` gives a descriptor (the local transport's)
lets send.py copy with `copy_file_range` and hash from the page cache; a remote transport's raise
io.UnsupportedOperation there and the bytes go through `read_at` / `write_at`.

`where` names the endpoint in messages ("no space left on {where} writing ..."); `label` names it for
the space budget's "destination full ... on {label}".
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

import xxhash

from transfers.engine import hashing

__all__ = [
    "Destination",
    "Endpoint",
    "EndpointRefused",
    "PartialBusy",
    "PartialFile",
    "Source",
    "SourceFile",
    "Stamp",
    "StoredFile",
    "VerifyFailed",
    "checksum_of",
    "descriptor",
    "feed",
    "stamp",
]


@dataclass(frozen=True)
class StoredFile:
    path: str  # endpoint-relative, `/`-separated
    size: int
    mtime_ns: int


class VerifyFailed(Exception):
    """What arrived is not what was sent (size or checksum); the partial file is discarded."""


class EndpointRefused(ConnectionError):
    """The endpoint refuses this run as it is configured (its host key is not the pinned one, the
    credentials are refused): no file can go through, so the run stops at once instead of retrying each."""


class PartialBusy(OSError):
    """Another transfer holds this partial file (the same path, written twice at once)."""


Stamp = tuple[int, int, int, int]  # size, mtime, ctime (ns), inode


def stamp(info: os.stat_result) -> Stamp:
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


class PartialFile(Protocol):
    """An open partial file, locked for its one writer until closed."""

    def write_at(self, data: bytes | memoryview, position: int) -> int: ...
    def read_at(self, buffer: memoryview, position: int) -> int: ...
    def truncate(self, size: int | None = None, /) -> int: ...
    def fileno(self) -> int:
        """Its descriptor (the fast path); io.UnsupportedOperation when it has none."""
        ...

    def close(self) -> None: ...
    def __enter__(self) -> PartialFile: ...
    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None: ...


class SourceFile(Protocol):
    """A source file opened for reading. `info`: its stat when opened (size, mtime, device, inode)."""

    @property
    def info(self) -> os.stat_result: ...
    def read_at(self, buffer: memoryview, position: int) -> int: ...
    def now(self) -> os.stat_result:
        """Its stat now, through what was opened (a write during the copy shows in size or mtime)."""
        ...

    def fileno(self) -> int:
        """Its descriptor (the fast path); io.UnsupportedOperation when it has none."""
        ...

    def close(self) -> None: ...


class Destination(Protocol):
    """Where a run writes: partial files, verified and renamed into place by `finalize`."""

    @property
    def label(self) -> str: ...
    @property
    def where(self) -> str: ...

    def stat(self, path: str) -> StoredFile | None: ...
    def has(self, path: str) -> bool: ...
    def names(self, folder: str) -> set[str]: ...
    def list(self, prefix: str = "") -> Iterator[StoredFile]: ...
    def partial_size(self, path: str) -> int: ...
    def open_partial(self, path: str, offset: int, *, size: int | None = None) -> PartialFile: ...
    def partial_digest(self, path: str, start: int, length: int) -> bytes: ...
    def finalize(self, path: str, *, size: int, checksum: str, handle: PartialFile, verified: Stamp | None = None) -> None: ...
    def discard_partial(self, path: str) -> None: ...
    def read_marker(self, path: str) -> bytes | None: ...
    def write_marker(self, path: str, data: bytes) -> None: ...
    def remove(self, path: str) -> None: ...
    def free_space(self) -> int: ...
    def sync(self) -> None: ...
    def native_path(self, path: str) -> Path | None: ...


class Source(Protocol):
    """Where a run reads. `where` None: the files are the user's local files ("local file not found: ...")."""

    @property
    def label(self) -> str: ...
    @property
    def where(self) -> str | None: ...

    def locate(self, path: str) -> tuple[str, os.stat_result | None]:
        """(located name, its stat or None when missing) of the file a task names; raises PathRefused."""
        ...

    def open_source(self, located: str) -> SourceFile:
        """The regular file, opened for reading; raises PathRefused, NotAFile or OSError."""
        ...

    def stat_source(self, located: str) -> os.stat_result:
        """The stat of what is at that name now (raises OSError when nothing is)."""
        ...

    def close(self) -> None:
        """Release what reading held (descriptors); the endpoint opens them again when used again."""
        ...


class Endpoint(Source, Destination, Protocol):
    """A place that can be either end of a run (what a transport's factory gives)."""

    @property
    def where(self) -> str: ...


# --- bytes at positions: what the runner and send.py need of any handle ---------------------------


class _Positional(Protocol):
    def read_at(self, buffer: memoryview, position: int) -> int: ...
    def fileno(self) -> int: ...


def descriptor(handle: _Positional) -> int | None:
    """The handle's descriptor (the local fast path), or None (a remote transport's)."""
    try:
        return handle.fileno()
    except io.UnsupportedOperation:
        return None


def feed(digest: xxhash.xxh3_128, handle: _Positional, start: int, length: int, *, chunk: int = 1 << 20) -> None:
    """Hash `length` bytes of a handle from `start` into `digest` (a short file: what is there)."""
    buffer = memoryview(bytearray(min(chunk, max(length, 1))))
    position, end = start, start + length
    while position < end:
        got = handle.read_at(buffer[: min(chunk, end - position)], position)
        if not got:
            break
        digest.update(buffer[:got])
        position += got


def checksum_of(file: SourceFile, size: int, *, like: str) -> str:
    """The checksum of an opened source file in the scheme of `like` (from its descriptor when it has one)."""
    fd = descriptor(file)
    if fd is not None:
        return hashing.fd_checksum(fd, like=like)
    range_size = hashing.range_size_of(like)
    if range_size is None:
        digest = xxhash.xxh3_128()
        feed(digest, file, 0, size)
        return hashing.plain(digest.hexdigest())
    digests = []
    for start in range(0, size, range_size):
        part = xxhash.xxh3_128()
        feed(part, file, start, min(range_size, size - start))
        digests.append(part.digest())
    return hashing.ranged(range_size, digests)
