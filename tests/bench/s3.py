"""Benchmarks 19-20: one big file to and from an S3 server (`rclone serve s3` on loopback,
tests/servers/s3server.py) through run_transfer (S3Bucket), vs `rclone copy` against the same server.

Sources are warm; downloads land in the page cache (no fsync on either side). rclone copy checks the md5
of what it sent (its default); ours verifies xxh3 per part.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.bench.common import Config, Row, interleaved, log, timed, write_random_file
from tests.bench.remote import transfer
from tests.bench.sftp import _check, _rates
from tests.servers.s3server import S3Server, rclone_remote
from transfers.engine.endpoints import LocalFiles, LocalFolder, S3Bucket
from transfers.engine.runner import Move, TransferOptions


def _setup(config: Config, size: int) -> tuple[Path, S3Server]:
    source = config.root / "s3-big" / "big.bin"
    if not source.exists():
        log(f"writing {size >> 20} MiB of random bytes to {source}")
        write_random_file(source, size)
    return source, S3Server.start(config.fresh("s3-data"))


def _stored(server: S3Server, prefix: str) -> Path:
    return server.root / server.bucket / prefix / "big.bin"


def upload(config: Config) -> Row:
    size = (256 << 20) if config.quick else (2 << 30)
    row = Row(19, f"S3 upload, one {size >> 20} MiB file, rclone serve s3 on loopback", goal=">= 1x rclone copy")
    source, server = _setup(config, size)
    argv, env = rclone_remote(server)
    try:

        def ours(_: int) -> float:
            prefix = config.fresh("up-ours").name
            remote = S3Bucket(**server.settings(prefix=prefix))  # type: ignore[arg-type]
            try:
                seconds = timed(
                    lambda: transfer(LocalFiles([source.parent]), remote, [Move(1, str(source), "big.bin")], TransferOptions())
                )
            finally:
                remote.close()
            _check(_stored(server, prefix), size)
            return seconds

        def rclone(_: int) -> float:
            prefix = config.fresh("up-rclone").name
            command = [*argv, "copy", str(source), f"RVS3:{server.bucket}/{prefix}"]
            seconds = timed(lambda: subprocess.run(command, env=env, check=True))
            _check(_stored(server, prefix), size)
            return seconds

        series = interleaved(min(config.rounds, 3), [("ours", ours), ("rclone", rclone)])
    finally:
        server.stop()
    _rates(row, size, series["ours"].median, series["rclone"].median, "rclone", 1)
    row.notes += [
        "ours: run_transfer into S3Bucket (defaults: 16 MiB parts, xxh3 per part, completed only when every part checks)",
        f"ours:   {series['ours'].describe()}",
        f"rclone: {series['rclone'].describe()}",
    ]
    return row


def download(config: Config) -> Row:
    size = (256 << 20) if config.quick else (2 << 30)
    row = Row(20, f"S3 download, one {size >> 20} MiB file, rclone serve s3 on loopback", goal=">= 1x rclone copy")
    source, server = _setup(config, size)
    argv, env = rclone_remote(server)
    prefix = "big"
    stored = _stored(server, prefix)
    stored.parent.mkdir(parents=True)
    subprocess.run(["cp", str(source), str(stored)], check=True)
    try:

        def ours(_: int) -> float:
            target = config.fresh("down-ours")
            target.mkdir()
            remote, local = S3Bucket(**server.settings(prefix=prefix)), LocalFolder(target)  # type: ignore[arg-type]
            try:
                seconds = timed(lambda: transfer(remote, local, [Move(1, "big.bin", "big.bin")], TransferOptions()))
            finally:
                remote.close()
                local.close()
            _check(target / "big.bin", size)
            return seconds

        def rclone(_: int) -> float:
            target = config.fresh("down-rclone")
            command = [*argv, "copy", f"RVS3:{server.bucket}/{prefix}/big.bin", str(target)]
            seconds = timed(lambda: subprocess.run(command, env=env, check=True))
            _check(target / "big.bin", size)
            return seconds

        series = interleaved(min(config.rounds, 3), [("ours", ours), ("rclone", rclone)])
    finally:
        server.stop()
    _rates(row, size, series["ours"].median, series["rclone"].median, "rclone", 1)
    row.notes += [
        "ours: run_transfer from S3Bucket into a LocalFolder (defaults: parallel ranged GETs, xxh3 while receiving,"
        " read back, verified, renamed)",
        f"ours:   {series['ours'].describe()}",
        f"rclone: {series['rclone'].describe()}",
    ]
    return row
