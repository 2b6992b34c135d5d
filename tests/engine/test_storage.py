"""LocalStorage: files by server path under one root, written through a partial file, renamed into place
only by finalize after size and checksum were verified (issue 3 item 4).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import xxhash

from transfers.engine import hashing
from transfers.engine.paths import PathRefused
from transfers.engine.storage import PARTIAL_SUFFIX, LocalStorage, StoredFile, VerifyFailed


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "root")


def _finalize(storage: LocalStorage, server: str, *, size: int, checksum: str) -> None:
    """Finalize as a writer does: holding the locked partial file it wrote."""
    with storage.open_partial(server, storage.partial_size(server)) as handle:
        storage.finalize(server, size=size, checksum=checksum, handle=handle)


def _write_partial(storage: LocalStorage, server: str, data: bytes, offset: int = 0) -> None:
    with storage.open_partial(server, offset) as handle:
        handle.write(data)


def _checksum(data: bytes) -> str:
    return hashing.plain(xxhash.xxh3_128(data).hexdigest())


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_local_storage_creates_its_root(tmp_path: Path) -> None:
    LocalStorage(tmp_path / "a" / "b")

    assert (tmp_path / "a" / "b").is_dir()


# stat, list, native_path


def test_stat_gives_the_clean_path_size_and_mtime_of_a_stored_file(storage: LocalStorage) -> None:
    path = storage.root / "D" / "a.exr"
    path.parent.mkdir()
    path.write_bytes(b"12345")

    assert storage.stat("/D\\a.exr") == StoredFile("D/a.exr", 5, path.stat().st_mtime_ns)


def test_stat_of_a_missing_file_is_none(storage: LocalStorage) -> None:
    assert storage.stat("D/missing.exr") is None


def test_stat_of_a_folder_is_none(storage: LocalStorage) -> None:
    (storage.root / "D").mkdir()

    assert storage.stat("D") is None


def test_stat_refuses_a_path_that_escapes_the_root(storage: LocalStorage) -> None:
    with pytest.raises(PathRefused):
        storage.stat("../outside")


def test_list_gives_every_stored_file_in_sorted_order(storage: LocalStorage) -> None:
    for name in ["D/b.exr", "D/a.exr", "C/x/y.exr"]:
        (storage.root / name).parent.mkdir(parents=True, exist_ok=True)
        (storage.root / name).write_bytes(b"x")

    assert [f.path for f in storage.list()] == ["C/x/y.exr", "D/a.exr", "D/b.exr"]


def test_list_under_a_prefix_gives_only_that_folder(storage: LocalStorage) -> None:
    for name in ["D/a.exr", "C/b.exr"]:
        (storage.root / name).parent.mkdir(parents=True, exist_ok=True)
        (storage.root / name).write_bytes(b"x")

    assert [f.path for f in storage.list("/D/")] == ["D/a.exr"]


def test_list_skips_partial_files(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"half")

    assert list(storage.list()) == []


def test_list_skips_the_range_marker_of_a_partial_file(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"half")
    storage.write_marker("D/a.exr", b"{}")

    assert list(storage.list()) == []


def test_native_path_is_the_final_file_under_the_root(storage: LocalStorage) -> None:
    assert storage.native_path("/D/a.exr") == storage.root / "D" / "a.exr"


# partial files


def test_open_partial_writes_beside_the_final_name_never_at_it(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"data")

    assert _files(storage.root) == [f"D/.a.exr{PARTIAL_SUFFIX}"]


def test_partial_size_of_no_partial_is_zero(storage: LocalStorage) -> None:
    assert storage.partial_size("D/a.exr") == 0


def test_partial_size_counts_the_bytes_written(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"123456")

    assert storage.partial_size("D/a.exr") == 6


def test_open_partial_at_an_offset_cuts_the_rest_and_continues_there(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"abcdefgh")

    _write_partial(storage, "D/a.exr", b"XY", offset=3)

    assert (storage.root / "D" / f".a.exr{PARTIAL_SUFFIX}").read_bytes() == b"abcXY"


def test_open_partial_with_a_size_preallocates_and_keeps_the_content(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"abc")

    with storage.open_partial("D/a.exr", 5, size=8) as handle:
        handle.write(b"Z")

    assert (storage.root / "D" / f".a.exr{PARTIAL_SUFFIX}").read_bytes() == b"abc\0\0Z\0\0"


def test_partial_digest_hashes_a_range_of_the_partial(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"0123456789")

    assert storage.partial_digest("D/a.exr", 2, 5) == xxhash.xxh3_128(b"23456").digest()


def test_discard_partial_removes_the_partial_and_its_marker(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"half")
    storage.write_marker("D/a.exr", b"{}")

    storage.discard_partial("D/a.exr")

    assert _files(storage.root) == []


def test_discard_partial_without_a_partial_does_nothing(storage: LocalStorage) -> None:
    storage.discard_partial("D/a.exr")

    assert _files(storage.root) == []


def test_marker_reads_back_what_was_written(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"half")
    storage.write_marker("D/a.exr", b'{"done": {}}')

    assert storage.read_marker("D/a.exr") == b'{"done": {}}'


def test_marker_of_a_file_without_one_is_none(storage: LocalStorage) -> None:
    assert storage.read_marker("D/a.exr") is None


# finalize


def test_finalize_renames_a_verified_partial_into_place(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"content")

    _finalize(storage, "D/a.exr", size=7, checksum=_checksum(b"content"))

    assert _files(storage.root) == ["D/a.exr"]
    assert (storage.root / "D" / "a.exr").read_bytes() == b"content"


def test_finalize_removes_the_range_marker(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"content")
    storage.write_marker("D/a.exr", b"{}")

    _finalize(storage, "D/a.exr", size=7, checksum=_checksum(b"content"))

    assert storage.read_marker("D/a.exr") is None


def test_finalize_fails_when_another_file_takes_the_final_name_at_once(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_partial(storage, "D/a.exr", b"content")
    real_replace = os.replace

    def replace_then_overtaken(source: Any, target: Any, **at: Any) -> None:
        real_replace(source, target, **at)
        if os.fspath(target) == "a.exr":  # a second writer of the name renames its file in
            intruder = storage.root / "D" / "intruder"
            intruder.write_bytes(b"another")
            real_replace(intruder, storage.root / "D" / "a.exr")

    monkeypatch.setattr(os, "replace", replace_then_overtaken)

    with pytest.raises(VerifyFailed, match="another file took its place"):
        _finalize(storage, "D/a.exr", size=7, checksum=_checksum(b"content"))


def test_new_folders_are_0755_and_files_0644_whatever_the_umask(storage: LocalStorage) -> None:
    old = os.umask(0o077)
    try:
        _write_partial(storage, "D/E/a.exr", b"content")
        _finalize(storage, "D/E/a.exr", size=7, checksum=_checksum(b"content"))
    finally:
        os.umask(old)

    modes = [oct((storage.root / path).stat().st_mode & 0o777) for path in ("D", "D/E", "D/E/a.exr")]
    assert modes == ["0o755", "0o755", "0o644"]


def test_local_storage_label_names_it_as_given_and_defaults_to_its_root(tmp_path: Path) -> None:
    assert LocalStorage(tmp_path / "r", label='input storage of farm account "a"').label == 'input storage of farm account "a"'
    assert LocalStorage(tmp_path / "r").label == str(tmp_path / "r")


def test_finalize_replaces_an_existing_file(storage: LocalStorage) -> None:
    (storage.root / "a.exr").write_bytes(b"old")
    _write_partial(storage, "a.exr", b"new!")

    _finalize(storage, "a.exr", size=4, checksum=_checksum(b"new!"))

    assert (storage.root / "a.exr").read_bytes() == b"new!"


def test_finalize_verifies_a_ranged_checksum(storage: LocalStorage) -> None:
    data = bytes(range(256)) * 10
    _write_partial(storage, "a.bin", data)
    checksum = hashing.ranged(1000, (xxhash.xxh3_128(data[s : s + 1000]).digest() for s in range(0, len(data), 1000)))

    _finalize(storage, "a.bin", size=len(data), checksum=checksum)

    assert (storage.root / "a.bin").read_bytes() == data


def test_finalize_refuses_a_partial_of_the_wrong_size_and_discards_it(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"conten")

    with pytest.raises(VerifyFailed, match="6 bytes arrived, 7 were sent"):
        _finalize(storage, "D/a.exr", size=7, checksum=_checksum(b"content"))
    assert _files(storage.root) == []


def test_finalize_refuses_a_partial_with_the_wrong_checksum_and_discards_it(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"contenT")

    with pytest.raises(VerifyFailed, match="checksum at the destination"):
        _finalize(storage, "D/a.exr", size=7, checksum=_checksum(b"content"))
    assert _files(storage.root) == []


def test_finalize_that_fails_keeps_the_existing_file(storage: LocalStorage) -> None:
    (storage.root / "a.exr").write_bytes(b"old")
    _write_partial(storage, "a.exr", b"bad")

    with pytest.raises(VerifyFailed):
        _finalize(storage, "a.exr", size=3, checksum=_checksum(b"new"))
    assert (storage.root / "a.exr").read_bytes() == b"old"


def test_finalize_of_a_large_file_verifies_and_renames(storage: LocalStorage) -> None:
    data = b"\x5a" * (5 << 20)  # above the size that gets its own fsync
    _write_partial(storage, "big.bin", data)

    _finalize(storage, "big.bin", size=len(data), checksum=_checksum(data))

    assert (storage.root / "big.bin").stat().st_size == len(data)


# remove, free space, sync


def test_remove_deletes_a_stored_file(storage: LocalStorage) -> None:
    (storage.root / "a.exr").write_bytes(b"x")

    storage.remove("a.exr")

    assert storage.stat("a.exr") is None


def test_remove_of_a_missing_file_does_nothing(storage: LocalStorage) -> None:
    storage.remove("a.exr")

    assert _files(storage.root) == []


def test_free_space_is_what_the_filesystem_reports(storage: LocalStorage) -> None:
    free = shutil.disk_usage(storage.root).free

    assert abs(storage.free_space() - free) < 64 << 20


def test_sync_flushes_without_error(storage: LocalStorage) -> None:
    (storage.root / "a.exr").write_bytes(b"x")

    storage.sync()

    assert (storage.root / "a.exr").read_bytes() == b"x"


def test_a_folder_removed_after_first_use_is_made_again(storage: LocalStorage) -> None:
    _write_partial(storage, "D/E/a.exr", b"content")
    _finalize(storage, "D/E/a.exr", size=7, checksum=_checksum(b"content"))
    shutil.rmtree(storage.root / "D")

    _write_partial(storage, "D/E/b.exr", b"again")
    _finalize(storage, "D/E/b.exr", size=5, checksum=_checksum(b"again"))

    assert _files(storage.root) == ["D/E/b.exr"]


def test_close_releases_the_descriptors_and_the_storage_opens_them_again(storage: LocalStorage) -> None:
    _write_partial(storage, "D/a.exr", b"content")
    opened = len(os.listdir("/proc/self/fd"))

    storage.close()

    assert len(os.listdir("/proc/self/fd")) < opened
    _finalize(storage, "D/a.exr", size=7, checksum=_checksum(b"content"))
    assert _files(storage.root) == ["D/a.exr"]
