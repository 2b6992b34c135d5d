"""Content checksums: xxh3-128, tagged with the scheme so a stored value can always be recomputed.

* `xxh3-128:<hex>` — the whole file in one stream.
* `xxh3-128/r<range size>:<hex>` — a file sent in parallel ranges: xxh3-128 over the 16-byte
  xxh3-128 digests of its ranges, in order. Each range is verified on its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import xxhash

PLAIN = "xxh3-128"
READ_CHUNK = 1 << 20


def plain(hexdigest: str) -> str:
    return f"{PLAIN}:{hexdigest}"


def ranged(range_size: int, digests: Iterable[bytes]) -> str:
    combined = xxhash.xxh3_128()
    for digest in digests:
        combined.update(digest)
    return f"{PLAIN}/r{range_size}:{combined.hexdigest()}"


def range_size_of(checksum: str) -> int | None:
    """The range size a checksum was made with, or None for a plain one."""
    scheme = checksum.partition(":")[0]
    return int(scheme.partition("/r")[2]) if "/r" in scheme else None


def feed(digest: xxhash.xxh3_128, fd: int, start: int, length: int, *, chunk: int = READ_CHUNK) -> None:
    """Hash `length` bytes of an open file from `start` into `digest` (a short file: what is there)."""
    offset, end = start, start + length
    while offset < end:
        data = os.pread(fd, min(chunk, end - offset), offset)
        if not data:
            break
        digest.update(data)
        offset += len(data)


def hash_range(fd: int, start: int, length: int, *, chunk: int = READ_CHUNK) -> bytes:
    """xxh3-128 digest of `length` bytes of an open file from `start`."""
    digest = xxhash.xxh3_128()
    feed(digest, fd, start, length, chunk=chunk)
    return digest.digest()


def file_checksum(path: str | os.PathLike[str], *, like: str | None = None) -> str:
    """The checksum of a file in the same scheme as `like` (plain when None)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return fd_checksum(fd, like=like)
    finally:
        os.close(fd)


def fd_checksum(fd: int, *, like: str | None = None) -> str:
    """The checksum of an open file, from its first byte to its end."""
    range_size = range_size_of(like) if like else None
    size = os.fstat(fd).st_size
    if range_size is None:
        return plain(hash_range(fd, 0, size).hex())
    return ranged(range_size, (hash_range(fd, start, range_size) for start in range(0, size, range_size)))
