"""The endpoint contract (issue 7 item 1), run once against every registered transport.

Whatever a transport is (a local folder today; SFTP, the vendor's transmitter later), the runner relies
on the same behaviour: a partial file that resumes at its offset, nothing at the final name before a
verified commit, remove, stat, list, free space, reading back what was committed, and paths that
cannot escape the endpoint or take its own `.rvpart` names. A new transport adds its harness to
HARNESSES (a test below fails until it does) and passes these tests unchanged. Besides the registered
transports, the contract runs against a test double without descriptors (tests/engine/memory_endpoint.py),
as a remote transport would be: the interface does not lean on the local fast path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import xxhash

from tests.engine.memory_endpoint import MemoryEndpoint
from tests.servers.s3server import fresh_prefix, shared_server
from tests.servers.sshd import shared_sshd
from transfers.engine import hashing
from transfers.engine.endpoints import TRANSPORTS, Endpoint, PartialBusy, SftpFolder, StoredFile, VerifyFailed, open_endpoint
from transfers.engine.paths import PathRefused


@dataclass(frozen=True)
class Harness:
    """How the contract makes an endpoint of one transport, and plants a link out of it (an attack)."""

    make: Callable[[Path], Endpoint]
    # plant(endpoint, name, outside): make `name` (a folder of the endpoint) lead to the folder `outside`;
    # None: the transport has no links (nothing to plant)
    plant: Callable[[Endpoint, str, Path], None] | None = None


def _local_plant(endpoint: Endpoint, name: str, outside: Path) -> None:
    native = endpoint.native_path(f"{name}/x")
    assert native is not None
    if native.parent.exists():
        native.parent.rename(native.parent.with_name(f"{name}.old"))  # swapped: what an attacker does
    native.parent.symlink_to(outside, target_is_directory=True)


def _sftp(tmp: Path) -> Endpoint:
    """An SFTP folder on the tests' own sshd (tests.servers.sshd), in a fresh folder of this machine."""
    root = tmp / "sftp-area"
    root.mkdir()
    return open_endpoint("sftp", **shared_sshd().endpoint_settings(root=str(root), label="the area"))


def _sftp_plant(endpoint: Endpoint, name: str, outside: Path) -> None:
    """The server is this machine: the link is planted in the remote root through its local path."""
    assert isinstance(endpoint, SftpFolder)
    folder = Path(endpoint.root) / name
    if folder.exists():
        folder.rename(folder.with_name(f"{name}.old"))
    folder.symlink_to(outside, target_is_directory=True)


HARNESSES: dict[str, Harness] = {
    "local": Harness(make=lambda tmp: open_endpoint("local", root=tmp / "area", label="the area"), plant=_local_plant),
    "sftp": Harness(make=_sftp, plant=_sftp_plant),
    "memory (test double, no descriptors)": Harness(make=lambda tmp: MemoryEndpoint()),
    # a real `rclone serve s3`, a fresh prefix of its bucket per test; S3 has no links to plant
    "s3": Harness(make=lambda tmp: open_endpoint("s3", **shared_server().settings(prefix=fresh_prefix()))),
}
LINKABLE = sorted(name for name, harness in HARNESSES.items() if harness.plant is not None)
Planted = tuple[Endpoint, Callable[[Endpoint, str, Path], None]]


@pytest.fixture(params=sorted(HARNESSES))
def endpoint(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Endpoint]:
    made = HARNESSES[request.param].make(tmp_path)
    yield made
    made.close()


@pytest.fixture(params=LINKABLE)
def linkable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Planted]:
    """An endpoint of a transport that has links (symlinks, for the local one), and how to plant one."""
    harness = HARNESSES[request.param]
    assert harness.plant is not None
    made = harness.make(tmp_path)
    yield made, harness.plant
    made.close()


def _checksum(data: bytes) -> str:
    return hashing.plain(xxhash.xxh3_128(data).hexdigest())


def _write(endpoint: Endpoint, path: str, data: bytes, offset: int = 0) -> None:
    with endpoint.open_partial(path, offset) as handle:
        handle.write_at(data, offset)


def _commit(endpoint: Endpoint, path: str, data: bytes, *, checksum: str | None = None) -> None:
    with endpoint.open_partial(path, endpoint.partial_size(path)) as handle:
        endpoint.finalize(path, size=len(data), checksum=checksum or _checksum(data), handle=handle)


def _store(endpoint: Endpoint, path: str, data: bytes) -> None:
    _write(endpoint, path, data)
    _commit(endpoint, path, data)


def _read(endpoint: Endpoint, path: str) -> bytes:
    located, info = endpoint.locate(path)
    assert info is not None
    file = endpoint.open_source(located)
    try:
        buffer = memoryview(bytearray(info.st_size + 1))
        return bytes(buffer[: file.read_at(buffer, 0)])
    finally:
        file.close()


def test_every_registered_transport_has_a_contract_harness() -> None:
    assert set(TRANSPORTS) <= set(HARNESSES)


def test_open_endpoint_refuses_an_unknown_transport() -> None:
    with pytest.raises(ValueError, match="unknown transport 'carrier-pigeon'"):
        open_endpoint("carrier-pigeon")


# partial files and their resume offset


def test_a_partial_file_grows_from_its_resume_offset(endpoint: Endpoint) -> None:
    _write(endpoint, "D/a.exr", b"abc")
    assert endpoint.partial_size("D/a.exr") == 3

    _write(endpoint, "D/a.exr", b"def", offset=endpoint.partial_size("D/a.exr"))

    assert endpoint.partial_size("D/a.exr") == 6
    assert endpoint.partial_digest("D/a.exr", 0, 6) == xxhash.xxh3_128(b"abcdef").digest()


def test_opening_a_partial_at_an_offset_cuts_what_lies_beyond_it(endpoint: Endpoint) -> None:
    _write(endpoint, "D/a.exr", b"abcdefgh")

    _write(endpoint, "D/a.exr", b"XY", offset=3)

    assert (endpoint.partial_size("D/a.exr"), endpoint.partial_digest("D/a.exr", 0, 5)) == (5, xxhash.xxh3_128(b"abcXY").digest())


def test_a_partial_sized_for_ranges_keeps_what_it_holds(endpoint: Endpoint) -> None:
    _write(endpoint, "D/a.exr", b"abc")

    with endpoint.open_partial("D/a.exr", 5, size=8) as handle:
        handle.write_at(b"Z", 5)

    assert endpoint.partial_digest("D/a.exr", 0, 8) == xxhash.xxh3_128(b"abc\0\0Z\0\0").digest()


def test_a_partial_has_one_writer_at_a_time(endpoint: Endpoint) -> None:
    with endpoint.open_partial("D/a.exr", 0), pytest.raises(PartialBusy):
        endpoint.open_partial("D/a.exr", 0)


def test_a_partial_is_never_visible_at_the_final_name(endpoint: Endpoint) -> None:
    with endpoint.open_partial("D/a.exr", 0) as handle:
        handle.write_at(b"half", 0)

        assert (endpoint.stat("D/a.exr"), endpoint.has("D/a.exr"), endpoint.locate("D/a.exr")[1]) == (None, False, None)
        assert (list(endpoint.list()), endpoint.names("D")) == ([], set())


def test_a_range_marker_reads_back_and_is_never_listed(endpoint: Endpoint) -> None:
    _write(endpoint, "D/a.exr", b"half")
    endpoint.write_marker("D/a.exr", b'{"done": {}}')

    assert (endpoint.read_marker("D/a.exr"), list(endpoint.list())) == (b'{"done": {}}', [])
    assert endpoint.read_marker("D/other.exr") is None


def test_discard_partial_removes_the_partial_and_its_marker(endpoint: Endpoint) -> None:
    _write(endpoint, "D/a.exr", b"half")
    endpoint.write_marker("D/a.exr", b"{}")

    endpoint.discard_partial("D/a.exr")
    endpoint.discard_partial("D/never.exr")  # nothing there: nothing to do

    assert (endpoint.partial_size("D/a.exr"), endpoint.read_marker("D/a.exr")) == (0, None)


# commit: only after verification


def test_commit_renames_a_verified_partial_into_place(endpoint: Endpoint) -> None:
    _write(endpoint, "D/a.exr", b"content")

    _commit(endpoint, "D/a.exr", b"content")

    stored = endpoint.stat("D/a.exr")
    assert stored is not None and (stored.path, stored.size) == ("D/a.exr", 7)
    assert (endpoint.has("D/a.exr"), endpoint.partial_size("D/a.exr"), _read(endpoint, "D/a.exr")) == (True, 0, b"content")


def test_commit_clears_the_range_marker(endpoint: Endpoint) -> None:
    _write(endpoint, "D/a.exr", b"content")
    endpoint.write_marker("D/a.exr", b"{}")

    _commit(endpoint, "D/a.exr", b"content")

    assert endpoint.read_marker("D/a.exr") is None


@pytest.mark.parametrize(
    ("arrived", "error"), [(b"contenT", "checksum at the destination"), (b"conten", "6 bytes arrived, 7 were sent")]
)
def test_commit_refuses_what_does_not_verify_and_keeps_nothing(endpoint: Endpoint, arrived: bytes, error: str) -> None:
    _write(endpoint, "D/a.exr", arrived)

    with pytest.raises(VerifyFailed, match=error):
        _commit(endpoint, "D/a.exr", b"content", checksum=_checksum(b"content"))

    assert (endpoint.stat("D/a.exr"), endpoint.partial_size("D/a.exr"), list(endpoint.list())) == (None, 0, [])


def test_a_failed_commit_keeps_the_file_already_in_place(endpoint: Endpoint) -> None:
    _store(endpoint, "a.exr", b"old")
    _write(endpoint, "a.exr", b"bad")

    with pytest.raises(VerifyFailed):
        _commit(endpoint, "a.exr", b"new", checksum=_checksum(b"new"))

    assert _read(endpoint, "a.exr") == b"old"


def test_commit_replaces_an_older_file(endpoint: Endpoint) -> None:
    _store(endpoint, "a.exr", b"old")

    _store(endpoint, "a.exr", b"new!")

    assert _read(endpoint, "a.exr") == b"new!"


def test_commit_verifies_a_ranged_checksum(endpoint: Endpoint) -> None:
    data = bytes(range(256)) * 10
    _write(endpoint, "a.bin", data)
    ranged = hashing.ranged(1000, (xxhash.xxh3_128(data[s : s + 1000]).digest() for s in range(0, len(data), 1000)))

    _commit(endpoint, "a.bin", data, checksum=ranged)

    assert _read(endpoint, "a.bin") == data


# stat, list, remove, free space


def test_stat_list_and_names_see_committed_files_only(endpoint: Endpoint) -> None:
    for path in ["D/b.exr", "D/a.exr", "C/x/y.exr"]:
        _store(endpoint, path, path.encode())
    _write(endpoint, "D/c.exr", b"half")

    assert [f.path for f in endpoint.list()] == ["C/x/y.exr", "D/a.exr", "D/b.exr"]
    assert [f.path for f in endpoint.list("/D/")] == ["D/a.exr", "D/b.exr"]
    assert list(endpoint.list("nothing/here")) == []
    assert (endpoint.names("D"), endpoint.names("/C/x"), endpoint.names("E")) == ({"a.exr", "b.exr"}, {"y.exr"}, set())
    assert endpoint.stat("/D\\a.exr") == StoredFile("D/a.exr", 7, endpoint.stat("D/a.exr").mtime_ns)  # type: ignore[union-attr]


def test_stat_of_a_folder_or_a_missing_file_is_none(endpoint: Endpoint) -> None:
    _store(endpoint, "D/a.exr", b"a")

    assert (endpoint.stat("D"), endpoint.stat("D/missing.exr"), endpoint.stat("E/missing.exr")) == (None, None, None)


def test_remove_deletes_a_stored_file_and_ignores_a_missing_one(endpoint: Endpoint) -> None:
    _store(endpoint, "D/a.exr", b"a")

    endpoint.remove("D/a.exr")
    endpoint.remove("D/a.exr")
    endpoint.remove("E/never.exr")

    assert (endpoint.stat("D/a.exr"), list(endpoint.list())) == (None, [])


def test_free_space_is_a_byte_count(endpoint: Endpoint) -> None:
    free = endpoint.free_space()

    assert isinstance(free, int) and free > 0


def test_sync_keeps_what_was_committed(endpoint: Endpoint) -> None:
    _store(endpoint, "a.exr", b"x")

    endpoint.sync()

    assert _read(endpoint, "a.exr") == b"x"


# as a source


def test_a_source_locates_a_committed_file_and_opens_it_for_reading(endpoint: Endpoint) -> None:
    _store(endpoint, "D/a.exr", b"frame")

    located, info = endpoint.locate("/D/a.exr")

    assert info is not None and info.st_size == 5
    assert (endpoint.stat_source(located).st_size, _read(endpoint, "D/a.exr")) == (5, b"frame")


def test_a_source_locates_nothing_for_a_missing_file_and_refuses_to_open_it(endpoint: Endpoint) -> None:
    located, info = endpoint.locate("D/missing.exr")

    assert info is None
    with pytest.raises(FileNotFoundError):
        endpoint.open_source(located)
    with pytest.raises(FileNotFoundError):
        endpoint.stat_source(located)


def test_an_endpoint_works_again_after_close(endpoint: Endpoint) -> None:
    _store(endpoint, "a.exr", b"before")
    endpoint.close()

    _store(endpoint, "b.exr", b"after")

    assert (_read(endpoint, "a.exr"), _read(endpoint, "b.exr")) == (b"before", b"after")


# paths that are not the endpoint's to give


ESCAPES = ["../outside.exr", "D/../../outside.exr", "/D/../../../etc/passwd", "", "D/\x00.exr"]
RESERVED = ["D/.a.exr.rvpart", "D/.a.exr.rvpart.ranges", "x.rvpart/a.exr"]


@pytest.mark.parametrize("path", ESCAPES + RESERVED)
def test_every_operation_refuses_a_path_that_escapes_or_takes_a_reserved_name(endpoint: Endpoint, path: str) -> None:
    operations: list[Callable[[], object]] = [
        lambda: endpoint.open_partial(path, 0),
        lambda: endpoint.stat(path),
        lambda: endpoint.has(path),
        lambda: endpoint.partial_size(path),
        lambda: endpoint.remove(path),
        lambda: endpoint.discard_partial(path),
        lambda: endpoint.write_marker(path, b"{}"),
        lambda: endpoint.locate(path),
        lambda: endpoint.open_source(path),
    ]
    for operation in operations:
        with pytest.raises(PathRefused):
            operation()


def test_a_reserved_name_is_refused_even_where_the_real_file_exists(endpoint: Endpoint) -> None:
    _store(endpoint, "D/a.exr", b"the real file")
    _write(endpoint, "D/b.exr", b"half")

    with pytest.raises(PathRefused, match="reserved name"):
        endpoint.locate("D/.b.exr.rvpart")
    assert _read(endpoint, "D/a.exr") == b"the real file"


def test_nothing_is_written_or_read_through_a_link_planted_out_of_the_endpoint(linkable: Planted, tmp_path: Path) -> None:
    endpoint, plant = linkable
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.exr").write_bytes(b"secret")
    plant(endpoint, "D", outside)

    with pytest.raises(PathRefused):
        _write(endpoint, "D/a.exr", b"data")
    with pytest.raises(PathRefused):
        endpoint.write_marker("D/a.exr", b"{}")
    with pytest.raises(PathRefused):
        endpoint.open_source(endpoint.locate("D/secret.exr")[0])

    assert sorted(p.name for p in outside.iterdir()) == ["secret.exr"]
    assert [f.path for f in endpoint.list()] == []


def test_a_folder_swapped_for_a_link_after_first_use_redirects_nothing(linkable: Planted, tmp_path: Path) -> None:
    endpoint, plant = linkable
    _store(endpoint, "D/first.exr", b"first")  # the endpoint has walked and checked D before
    outside = tmp_path / "outside"
    outside.mkdir()
    plant(endpoint, "D", outside)

    with contextlib.suppress(PathRefused):  # refused, or written into the folder that was checked
        _store(endpoint, "D/a.exr", b"data")
    with contextlib.suppress(PathRefused):
        endpoint.remove("D/first.exr")

    assert list(outside.iterdir()) == []
