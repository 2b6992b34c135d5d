"""The SFTP and S3 transports through a fault proxy (tests/servers/faultproxy.py) that resets each connection
every few MB, between the engine and a real server (the tests' sshd, `rclone serve s3`).

A 2 GiB file goes up and a 512 MiB one comes down through each transport byte-identical (xxh3 of
both ends), and a cut costs only what was in flight: the bytes the proxy carried are well under 1.5x the
file (a resume at the offset or the next part, never from zero), with cuts that really happened. Many
small files through the same kind of proxy all arrive, each once, and nothing is left beside them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash

from tests.engine.test_runner import QUICK_RETRIES, Recorder
from tests.servers.faultproxy import FaultProxy
from tests.servers.s3server import S3Server
from tests.servers.sshd import Sshd
from transfers.engine.endpoints import LocalFiles, LocalFolder, S3Bucket, SftpFolder
from transfers.engine.events import FileFinished
from transfers.engine.runner import Move, RunSummary, TransferOptions, run_transfer

MIB = 1 << 20
BIG = 2048 * MIB  # an upload of the 2 GiB class, through each transport
BIG_DOWN = 512 * MIB  # a download, smaller: CI's time (the same resume code, the other way)
CUT_EVERY = 24_000_000  # bytes a connection carries (both ways) before the proxy resets it, +/- CUT_JITTER
CUT_JITTER = 0.5
CARRIED_AT_MOST = 1.5  # x the file: what a transfer that restarted from zero after a cut could not stay under
S3_PART = 8 * MIB
SMALL_FILES, SMALL_SIZE = 120, 64 * 1024
RETRYING = TransferOptions(attempts=100, **QUICK_RETRIES)  # type: ignore[arg-type]


def _random_file(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = xxhash.xxh3_128()
    with open(path, "wb") as handle:
        for start in range(0, size, 16 * MIB):
            block = os.urandom(min(16 * MIB, size - start))
            digest.update(block)
            handle.write(block)
    return digest.hexdigest()


def _xxh3(path: Path) -> str:
    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while block := handle.read(16 * MIB):
            digest.update(block)
    return digest.hexdigest()


def _run(source: Any, destination: Any, moves: list[Move], report: Recorder, options: TransferOptions = RETRYING) -> RunSummary:
    summary = run_transfer(source, destination, moves, report=report, options=options)
    assert summary.files_ok == len(moves), [e.error for e in report.finished().values() if not e.ok]
    return summary


@pytest.fixture
def ssh_proxy(sshd: Sshd) -> Iterator[FaultProxy]:
    with FaultProxy(sshd.host, sshd.port, cut_every=CUT_EVERY, cut_jitter=CUT_JITTER, seed=7) as proxy:
        yield proxy


@pytest.fixture
def cut_sftp(sshd: Sshd, ssh_proxy: FaultProxy, sftp_root: Path) -> Iterator[SftpFolder]:
    endpoint = SftpFolder(**sshd.endpoint_settings(root=str(sftp_root), port=ssh_proxy.port, label="the farm"))
    yield endpoint
    endpoint.close()


@pytest.fixture
def s3_proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    port = int(s3_server.endpoint_url.rsplit(":", 1)[1])
    with FaultProxy("127.0.0.1", port, cut_every=CUT_EVERY, cut_jitter=CUT_JITTER, seed=11) as proxy:
        yield proxy


@pytest.fixture
def cut_s3(s3_server: S3Server, s3_proxy: FaultProxy, s3_prefix: str) -> Iterator[S3Bucket]:
    settings = s3_server.settings(prefix=s3_prefix, part_size=S3_PART, endpoint_url=f"http://127.0.0.1:{s3_proxy.port}")
    endpoint = S3Bucket(**settings)  # type: ignore[arg-type]
    yield endpoint
    endpoint.close()


def _carried(proxy: FaultProxy, upstream: bool) -> int:
    return proxy.bytes_up if upstream else proxy.bytes_down


def _assert_resumed(proxy: FaultProxy, report: Recorder, *, upstream: bool) -> None:
    size = BIG if upstream else BIG_DOWN
    assert proxy.cuts > 0, "the proxy never cut a connection: the test proved nothing"
    carried = _carried(proxy, upstream)
    print(f"{proxy.cuts} cuts, {carried / size:.3f}x the file carried {'up' if upstream else 'down'}")  # seen with -s
    assert carried < CARRIED_AT_MOST * size, f"{carried:,} bytes carried for a {size:,}-byte file over {proxy.cuts} cuts"


# SFTP


def test_a_big_sftp_upload_through_cuts_lands_identical_resumed_each_time(
    tmp_path: Path, ssh_proxy: FaultProxy, cut_sftp: SftpFolder, sftp_root: Path
) -> None:
    expected = _random_file(tmp_path / "studio" / "big.bin", BIG)
    report = Recorder()

    _run(LocalFiles([tmp_path / "studio"]), cut_sftp, [Move(1, str(tmp_path / "studio" / "big.bin"), "7/big.bin")], report)

    assert _xxh3(sftp_root / "7" / "big.bin") == expected
    assert sorted(p.name for p in (sftp_root / "7").iterdir()) == ["big.bin"]
    _assert_resumed(ssh_proxy, report, upstream=True)


def test_a_big_sftp_download_through_cuts_lands_identical_resumed_each_time(
    tmp_path: Path, ssh_proxy: FaultProxy, cut_sftp: SftpFolder, sftp_root: Path
) -> None:
    expected = _random_file(sftp_root / "12" / "big.bin", BIG_DOWN)
    local = LocalFolder(tmp_path / "dl")
    report = Recorder()

    _run(cut_sftp, local, [Move(1, "12/big.bin", "big.bin")], report)

    assert _xxh3(tmp_path / "dl" / "big.bin") == expected
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["big.bin"]
    _assert_resumed(ssh_proxy, report, upstream=False)


def test_many_small_files_through_cuts_all_arrive_once(
    tmp_path: Path, ssh_proxy: FaultProxy, cut_sftp: SftpFolder, sftp_root: Path
) -> None:
    ssh_proxy.cut_every = 1_000_000
    contents = {n: os.urandom(SMALL_SIZE) for n in range(1, SMALL_FILES + 1)}
    for n, data in contents.items():
        (tmp_path / "studio" / f"s{n}.exr").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "studio" / f"s{n}.exr").write_bytes(data)
    moves = [Move(n, str(tmp_path / "studio" / f"s{n}.exr"), f"7/s{n}.exr") for n in contents]
    report = Recorder()

    _run(LocalFiles([tmp_path / "studio"]), cut_sftp, moves, report, TransferOptions(pool_size=4, attempts=100, **QUICK_RETRIES))  # type: ignore[arg-type]

    assert {n: (sftp_root / "7" / f"s{n}.exr").read_bytes() for n in contents} == contents
    assert sorted(p.name for p in (sftp_root / "7").iterdir()) == sorted(f"s{n}.exr" for n in contents)  # no partial left
    finished = [e.item_id for e in report.of(FileFinished)]
    assert sorted(finished) == sorted(contents)  # each file finished once
    assert ssh_proxy.cuts > 0


# S3


def test_a_big_s3_upload_through_cuts_lands_identical_resumed_at_its_next_part(
    tmp_path: Path, s3_server: S3Server, s3_proxy: FaultProxy, cut_s3: S3Bucket, s3_prefix: str
) -> None:
    expected = _random_file(tmp_path / "studio" / "big.bin", BIG)
    report = Recorder()

    _run(LocalFiles([tmp_path / "studio"]), cut_s3, [Move(1, str(tmp_path / "studio" / "big.bin"), "7/big.bin")], report)

    stored = s3_server.root / s3_server.bucket / s3_prefix / "7"
    assert _xxh3(stored / "big.bin") == expected
    assert sorted(p.name for p in stored.iterdir()) == ["big.bin"]
    _assert_resumed(s3_proxy, report, upstream=True)


def test_a_big_s3_download_through_cuts_lands_identical_resumed_each_time(
    tmp_path: Path, s3_server: S3Server, s3_proxy: FaultProxy, cut_s3: S3Bucket, s3_prefix: str
) -> None:
    expected = _random_file(tmp_path / "big.bin", BIG_DOWN)
    direct = S3Bucket(**s3_server.settings(prefix=s3_prefix))  # type: ignore[arg-type]
    direct.client().upload_file(str(tmp_path / "big.bin"), s3_server.bucket, f"{s3_prefix}/12/big.bin")
    direct.close()
    local = LocalFolder(tmp_path / "dl")
    report = Recorder()

    _run(cut_s3, local, [Move(1, "12/big.bin", "big.bin")], report)

    assert _xxh3(tmp_path / "dl" / "big.bin") == expected
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["big.bin"]
    _assert_resumed(s3_proxy, report, upstream=False)


def test_many_small_files_to_s3_through_cuts_all_arrive_once(
    tmp_path: Path, s3_server: S3Server, s3_proxy: FaultProxy, cut_s3: S3Bucket, s3_prefix: str
) -> None:
    s3_proxy.cut_every = 1_000_000
    contents = {n: os.urandom(SMALL_SIZE) for n in range(1, SMALL_FILES + 1)}
    for n, data in contents.items():
        (tmp_path / "studio" / f"s{n}.exr").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "studio" / f"s{n}.exr").write_bytes(data)
    moves = [Move(n, str(tmp_path / "studio" / f"s{n}.exr"), f"7/s{n}.exr") for n in contents]
    report = Recorder()

    _run(LocalFiles([tmp_path / "studio"]), cut_s3, moves, report, TransferOptions(pool_size=4, attempts=100, **QUICK_RETRIES))  # type: ignore[arg-type]

    stored = s3_server.root / s3_server.bucket / s3_prefix / "7"
    assert {n: (stored / f"s{n}.exr").read_bytes() for n in contents} == contents
    assert sorted(p.name for p in stored.iterdir()) == sorted(f"s{n}.exr" for n in contents)
    assert sorted(e.item_id for e in report.of(FileFinished)) == sorted(contents)
    assert s3_proxy.cuts > 0
