"""Content checksums: xxh3-128 tagged with its scheme, plain or over the digests of fixed-size ranges."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import xxhash

from transfers.engine import hashing


@pytest.fixture
def data() -> bytes:
    return os.urandom(300_001)


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    return path


def test_plain_checksum_is_tagged_xxh3_128_and_32_hex_digits() -> None:
    assert re.fullmatch(r"xxh3-128:[0-9a-f]{32}", hashing.plain(xxhash.xxh3_128(b"x").hexdigest()))


def test_file_checksum_is_the_xxh3_128_of_the_content(tmp_path: Path, data: bytes) -> None:
    assert hashing.file_checksum(_file(tmp_path, data)) == f"xxh3-128:{xxhash.xxh3_128(data).hexdigest()}"


def test_file_checksum_of_an_empty_file_is_the_xxh3_128_of_nothing(tmp_path: Path) -> None:
    assert hashing.file_checksum(_file(tmp_path, b"")) == f"xxh3-128:{xxhash.xxh3_128(b'').hexdigest()}"


def test_ranged_checksum_is_the_xxh3_128_of_the_range_digests_in_order(tmp_path: Path, data: bytes) -> None:
    size = 65536
    digests = b"".join(xxhash.xxh3_128(data[s : s + size]).digest() for s in range(0, len(data), size))

    assert hashing.ranged(size, [digests[i : i + 16] for i in range(0, len(digests), 16)]) == (
        f"xxh3-128/r65536:{xxhash.xxh3_128(digests).hexdigest()}"
    )


def test_file_checksum_like_a_ranged_one_uses_its_range_size(tmp_path: Path, data: bytes) -> None:
    size = 65536
    expected = hashing.ranged(size, (xxhash.xxh3_128(data[s : s + size]).digest() for s in range(0, len(data), size)))

    assert hashing.file_checksum(_file(tmp_path, data), like="xxh3-128/r65536:00") == expected


def test_file_checksum_like_a_plain_one_is_plain(tmp_path: Path, data: bytes) -> None:
    path = _file(tmp_path, data)

    assert hashing.file_checksum(path, like="xxh3-128:00") == hashing.file_checksum(path)


def test_ranged_and_plain_checksums_of_the_same_file_differ(tmp_path: Path, data: bytes) -> None:
    path = _file(tmp_path, data)

    assert hashing.file_checksum(path, like="xxh3-128/r65536:00") != hashing.file_checksum(path)


@pytest.mark.parametrize(("checksum", "size"), [("xxh3-128/r65536:ab", 65536), ("xxh3-128/r1:ab", 1), ("xxh3-128:ab", None)])
def test_range_size_of_reads_the_scheme(checksum: str, size: int | None) -> None:
    assert hashing.range_size_of(checksum) == size


def test_hash_range_hashes_a_slice_of_an_open_file(tmp_path: Path, data: bytes) -> None:
    fd = os.open(_file(tmp_path, data), os.O_RDONLY)
    try:
        assert hashing.hash_range(fd, 1000, 70_000) == xxhash.xxh3_128(data[1000:71_000]).digest()
    finally:
        os.close(fd)


def test_hash_range_past_the_end_hashes_what_is_there(tmp_path: Path, data: bytes) -> None:
    fd = os.open(_file(tmp_path, data), os.O_RDONLY)
    try:
        assert hashing.hash_range(fd, 300_000, 1000) == xxhash.xxh3_128(data[300_000:]).digest()
    finally:
        os.close(fd)


def test_hash_range_gives_the_same_digest_whatever_the_read_chunk(tmp_path: Path, data: bytes) -> None:
    fd = os.open(_file(tmp_path, data), os.O_RDONLY)
    try:
        assert hashing.hash_range(fd, 0, len(data), chunk=4093) == hashing.hash_range(fd, 0, len(data))
    finally:
        os.close(fd)
