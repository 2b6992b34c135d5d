"""run_transfer against a transport without descriptors (the memory double), both ways: what a remote
transport (SFTP) gets from the engine without touching send.py or the runner. The kernel copy is never
attempted; resume, ranges, verification, retries and the ledger work through `read_at` / `write_at`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import xxhash

from tests.engine.memory_endpoint import MemoryEndpoint, MemoryPartial
from tests.engine.test_runner import QUICK_RETRIES, Recorder
from transfers.engine.endpoints import LocalFiles, LocalFolder
from transfers.engine.events import BytesSent, FileRetrying
from transfers.engine.ledger import MemoryLedger
from transfers.engine.runner import Move, RunSummary, TransferOptions, run_transfer
from transfers.engine.send import SendOptions

KIB = 1 << 10
RANGED = SendOptions(chunk=16 * KIB, kernel_chunk=16 * KIB, range_size=64 * KIB, range_threshold=128 * KIB)


@pytest.fixture
def no_kernel_copy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fails the test if copy_file_range is called at all."""
    calls: list[int] = []

    def refuse(*args: Any) -> int:
        calls.append(1)
        raise AssertionError("copy_file_range called with an endpoint that has no descriptor")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    return calls


def _studio(tmp_path: Path, contents: dict[int, bytes], *, folder: str = "7") -> list[Move]:
    """The files in the studio's folder, and a Move of each to `folder/s<n>.exr` (the remote transports' tests too)."""
    for number, data in contents.items():
        path = tmp_path / "studio" / f"s{number}.exr"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return [Move(n, str(tmp_path / "studio" / f"s{n}.exr"), f"{folder}/s{n}.exr") for n in contents]


def _up(tmp_path: Path, remote: Any, tasks: list[Move], report: Recorder | None = None, **options: Any) -> RunSummary:
    return run_transfer(
        LocalFiles([tmp_path / "studio"]),
        remote,
        tasks,
        report=report if report is not None else Recorder(),
        options=TransferOptions(**options),
    )


def test_an_upload_into_a_remote_endpoint_moves_every_byte_without_the_kernel(tmp_path: Path, no_kernel_copy: list[int]) -> None:
    contents = {n: os.urandom(1 + n * 7919) for n in range(1, 6)}
    remote, report = MemoryEndpoint(), Recorder()

    summary = _up(tmp_path, remote, _studio(tmp_path, contents), report)

    assert (summary.files_ok, no_kernel_copy) == (5, [])
    assert {n: remote.files[f"7/s{n}.exr"].data for n in contents} == contents
    assert {n: e.checksum for n, e in report.finished().items()} == {
        n: f"xxh3-128:{xxhash.xxh3_128(data).hexdigest()}" for n, data in contents.items()
    }


def test_a_download_from_a_remote_endpoint_lands_verified_in_the_local_folder(tmp_path: Path, no_kernel_copy: list[int]) -> None:
    remote = MemoryEndpoint(where="the farm storage")
    frames = {n: os.urandom(1000 + n) for n in range(1, 4)}
    for n, data in frames.items():
        remote.put(f"12/f{n}.exr", data)
    (tmp_path / "home").mkdir()
    local = LocalFolder(tmp_path / "home" / "dl", allowed_roots=[tmp_path / "home"], where="the local folder")

    summary = run_transfer(remote, local, [Move(n, f"12/f{n}.exr", f"12_scene/f{n}.exr") for n in frames], report=Recorder())

    assert summary.files_ok == 3
    assert all((tmp_path / "home" / "dl" / "12_scene" / f"f{n}.exr").read_bytes() == data for n, data in frames.items())


def test_a_stopped_upload_resumes_in_the_remote_partial_from_its_verified_prefix(tmp_path: Path) -> None:
    tasks = _studio(tmp_path, {1: os.urandom(64 * KIB)})
    remote, small = MemoryEndpoint(), SendOptions(chunk=4 * KIB, kernel_chunk=4 * KIB)
    _up(tmp_path, remote, tasks, Recorder(stop_when=lambda e: isinstance(e, BytesSent)), pool_size=1, send=small)
    assert (remote.files, remote.partial_size("7/s1.exr")) == ({}, 4 * KIB)
    report = Recorder()

    summary = _up(tmp_path, remote, tasks, report, pool_size=1, send=small)

    assert [e.count for e in report.of(BytesSent) if e.resumed] == [4 * KIB]
    assert (summary.bytes_sent, remote.files["7/s1.exr"].data) == (60 * KIB, (tmp_path / "studio" / "s1.exr").read_bytes())


def test_a_large_file_goes_to_a_remote_endpoint_in_ranges_and_resumes_the_unfinished_ones(tmp_path: Path) -> None:
    data = os.urandom(256 * KIB)
    tasks = _studio(tmp_path, {1: data})
    remote = MemoryEndpoint()
    first = Recorder(stop_when=lambda e: isinstance(e, BytesSent) and sum(x.count for x in first.of(BytesSent)) >= 128 * KIB)
    _up(tmp_path, remote, tasks, first, pool_size=1, send=RANGED)
    report = Recorder()

    _up(tmp_path, remote, tasks, report, pool_size=1, send=RANGED)

    assert 0 < report.finished()[1].resumed < len(data)
    assert remote.files["7/s1.exr"].data == data
    assert report.finished()[1].checksum.startswith(f"xxh3-128/r{64 * KIB}:")


def test_bytes_a_remote_endpoint_stored_wrong_are_refused_and_sent_again(tmp_path: Path) -> None:
    class Garbling(MemoryEndpoint):
        garbled = False

        def open_partial(self, path: str, offset: int, *, size: int | None = None) -> Any:
            handle = super().open_partial(path, offset, size=size)
            assert isinstance(handle, MemoryPartial)
            real = handle.write_at

            def write_at(data: bytes | memoryview, position: int) -> int:
                if not Garbling.garbled:
                    Garbling.garbled = True
                    data = bytes([data[0] ^ 0xFF]) + bytes(data[1:])
                return real(data, position)

            handle.write_at = write_at  # type: ignore[method-assign]
            return handle

    contents = {1: os.urandom(10 * KIB)}
    remote, report = Garbling(), Recorder()

    summary = _up(tmp_path, remote, _studio(tmp_path, contents), report, **QUICK_RETRIES)

    assert [e.error_code for e in report.of(FileRetrying)] == ["verify_failed"]
    assert (summary.files_ok, remote.files["7/s1.exr"].data) == (1, contents[1])


def test_a_frame_rewritten_on_a_remote_source_during_its_download_is_fetched_again(tmp_path: Path) -> None:
    remote = MemoryEndpoint(where="the farm storage")
    remote.put("12/f1.exr", b"a" * 64 * KIB)
    (tmp_path / "home").mkdir()
    local = LocalFolder(tmp_path / "home" / "dl", allowed_roots=[tmp_path / "home"])

    def rerender(event: Any) -> None:
        if isinstance(event, BytesSent) and not report.of(FileRetrying) and len(report.of(BytesSent)) == 1:
            remote.put("12/f1.exr", b"b" * 70 * KIB)

    report = Recorder(then=rerender)

    run_transfer(
        remote,
        local,
        [Move(1, "12/f1.exr", "f1.exr")],
        report=report,
        options=TransferOptions(send=SendOptions(chunk=16 * KIB, kernel_chunk=16 * KIB), **QUICK_RETRIES),
    )

    assert [e.error_code for e in report.of(FileRetrying)] == ["source_changed"]
    assert (tmp_path / "home" / "dl" / "f1.exr").read_bytes() == b"b" * 70 * KIB


def test_the_ledger_skips_what_a_remote_endpoint_already_holds(tmp_path: Path) -> None:
    tasks = _studio(tmp_path, {1: b"one", 2: b"two"})
    remote, ledger = MemoryEndpoint(), MemoryLedger()
    run_transfer(LocalFiles([tmp_path / "studio"]), remote, tasks, report=Recorder(), ledger=ledger)
    report = Recorder()

    summary = run_transfer(LocalFiles([tmp_path / "studio"]), remote, tasks, report=report, ledger=ledger)

    assert (summary.files_skipped, report.of(BytesSent)) == (2, [])
