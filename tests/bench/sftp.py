"""Benchmarks 16-18: SFTP uploads through run_transfer (SftpFolder) against OpenSSH's own clients, on
loopback to the tests' sshd (tests/servers/sshd.py), both sides with the same cipher (aes128-gcm).

16. One big file vs `scp`.
17. 2,000 x 1 MiB files (files in parallel) vs `sftp -b` `put -r`.
18. The big file through the fault proxy (a process of its own) at 100 ms round trip with a per-connection
    rate cap, vs `scp` through the same proxy: ours goes in parallel ranges over several connections.

Sources are warm (in the page cache) for both sides and the destinations are written into the page cache
(no fsync on either side): the figures are for the transport, not the disk.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.bench.common import MB, Config, Row, interleaved, log, timed, write_random_file, write_tree
from tests.bench.remote import ProxyProcess, transfer
from tests.servers.sshd import Sshd
from transfers.engine.endpoints import LocalFiles, SftpFolder
from transfers.engine.runner import Move, TransferOptions

CIPHER = "aes128-gcm@openssh.com"
RATE = 20_000_000  # bench 18: bytes/s per connection and direction
LATENCY_MS = 50  # bench 18: each way


def _server(config: Config) -> Sshd:
    return Sshd.start(config.fresh("sshd"))


def _folder(server: Sshd, root: Path, *, port: int | None = None, **more: object) -> SftpFolder:
    settings = server.endpoint_settings(root=str(root), ciphers=(CIPHER,), **more)
    if port is not None:
        settings["port"] = port
    return SftpFolder(**settings)


def _big_source(config: Config, size: int) -> Path:
    source = config.root / "sftp-big" / "big.bin"
    if not source.exists() or source.stat().st_size != size:
        log(f"writing {size >> 20} MiB of random bytes to {source}")
        write_random_file(source, size)
    return source


def _scp(server: Sshd, source: Path, target: Path, *, port: int | None = None) -> None:
    argv = server.ssh_argv("scp", cipher=CIPHER)
    if port is not None:
        argv += ["-P", str(port), "-o", f"HostKeyAlias=[{server.host}]:{server.port}"]  # known_hosts names the real port
    subprocess.run([*argv, "-q", str(source), f"rvweb-test-sshd:{target}"], check=True)


def big_upload(config: Config) -> Row:
    size = (256 << 20) if config.quick else (2 << 30)
    row = Row(16, f"SFTP upload, one {size >> 20} MiB file, loopback", goal=">= 1.2x scp")
    source = _big_source(config, size)
    server = _server(config)
    try:

        def ours(_: int) -> float:
            root = config.fresh("sftp-ours")
            root.mkdir()
            with _folder(server, root) as remote:
                seconds = timed(
                    lambda: transfer(LocalFiles([source.parent]), remote, [Move(1, str(source), "big.bin")], TransferOptions())
                )
            _check(root / "big.bin", size)
            return seconds

        def scp(_: int) -> float:
            root = config.fresh("sftp-scp")
            root.mkdir()
            seconds = timed(lambda: _scp(server, source, root / "big.bin"))
            _check(root / "big.bin", size)
            return seconds

        series = interleaved(config.rounds, [("ours", ours), ("scp", scp)])
    finally:
        server.stop()
    _rates(row, size, series["ours"].median, series["scp"].median, "scp", 1.2)
    row.notes += [
        f"warm source, destination in the page cache, {CIPHER} both; ours: run_transfer into SftpFolder (default options:"
        " parallel ranges, xxh3 while sending, every byte read back and compared, rename after verification)",
        f"ours: {series['ours'].describe()}",
        f"scp:  {series['scp'].describe()}",
    ]
    return row


def many_files(config: Config) -> Row:
    count = 200 if config.quick else 2_000
    size = 1 << 20
    row = Row(17, f"SFTP upload, {count:,} x 1 MiB files, loopback", goal=">= 3x sftp -b put -r")
    source = config.root / "sftp-many"
    log(f"writing {count:,} files of 1 MiB under {source}")
    paths = write_tree(source, count, size, per_folder=500)
    moves = [Move(i, str(p), f"{p.parent.name}/{p.name}") for i, p in enumerate(paths, start=1)]
    server = _server(config)
    try:

        def ours(_: int) -> float:
            root = config.fresh("sftp-many-ours")
            root.mkdir()
            with _folder(server, root, connections=8) as remote:
                seconds = timed(lambda: transfer(LocalFiles([source]), remote, moves, TransferOptions(pool_size=8)))
            _check_count(root, count)
            return seconds

        def sftp_put(_: int) -> float:
            root = config.fresh("sftp-many-put")
            batch = config.fresh("batch")
            batch.write_text(f"put -r {source} {root}\n")
            argv = [*server.ssh_argv("sftp", cipher=CIPHER), "-q", "-b", str(batch), "rvweb-test-sshd"]
            seconds = timed(lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL))
            _check_count(root, count)
            return seconds

        series = interleaved(min(config.rounds, 3), [("ours", ours), ("sftp put -r", sftp_put)])
    finally:
        server.stop()
    ours_rate, theirs = count / series["ours"].median, count / series["sftp put -r"].median
    row.ours, row.baseline = f"{ours_rate:,.0f} files/s", f"{theirs:,.0f} files/s (sftp -b put -r)"
    row.ratio = ours_rate / theirs
    row.ratio_text = f"{row.ratio:.2f}x sftp"
    row.met = row.ratio >= 3
    row.notes += [
        f"warm sources, {CIPHER} both; ours: pool_size 8 files in parallel over 8 connections, each verified and renamed",
        f"ours: {series['ours'].describe()}",
        f"sftp: {series['sftp put -r'].describe()}",
    ]
    return row


def far_upload(config: Config) -> Row:
    size = (256 << 20) if config.quick else (2 << 30)
    row = Row(
        18,
        f"SFTP upload, one {size >> 20} MiB file, {2 * LATENCY_MS} ms round trip, {RATE // MB} MB/s per connection",
        goal=">= 3x scp",
    )
    source = _big_source(config, size)
    server = _server(config)
    connections = 16
    options = TransferOptions(pool_size=1)
    try:
        with ProxyProcess(server.port, latency_ms=LATENCY_MS, rate=RATE) as proxy:

            def ours(_: int) -> float:
                root = config.fresh("sftp-far-ours")
                root.mkdir()
                with _folder(server, root, port=proxy.port, connections=connections) as remote:
                    seconds = timed(
                        lambda: transfer(LocalFiles([source.parent]), remote, [Move(1, str(source), "big.bin")], options)
                    )
                _check(root / "big.bin", size)
                return seconds

            def scp(_: int) -> float:
                root = config.fresh("sftp-far-scp")
                root.mkdir()
                seconds = timed(lambda: _scp(server, source, root / "big.bin", port=proxy.port))
                _check(root / "big.bin", size)
                return seconds

            series = interleaved(min(config.rounds, 1 if not config.quick else 2), [("ours", ours), ("scp", scp)], warmup=False)
    finally:
        server.stop()
    _rates(row, size, series["ours"].median, series["scp"].median, "scp", 3)
    row.notes += [
        f"through tests.servers.faultproxy in its own process: latency {LATENCY_MS} ms each way, {RATE // MB} MB/s per"
        f" connection and direction; ours: SftpFolder(connections={connections}), default send options (ranges)",
        f"ours: {series['ours'].describe()}",
        f"scp:  {series['scp'].describe()}",
    ]
    return row


def _rates(row: Row, size: int, ours: float, theirs: float, name: str, goal: float) -> None:
    row.ours, row.baseline = f"{size / MB / ours:,.0f} MB/s", f"{size / MB / theirs:,.0f} MB/s ({name})"
    row.ratio = theirs / ours
    row.ratio_text = f"{row.ratio:.2f}x {name}"
    row.met = row.ratio >= goal


def _check(path: Path, size: int) -> None:
    if path.stat().st_size != size:
        raise RuntimeError(f"{path} has {path.stat().st_size} bytes, not {size}")
    path.unlink()  # frees the disk (and the page cache) for the next run


def _check_count(root: Path, count: int) -> None:
    found = sum(1 for p in root.rglob("*.bin") if p.is_file())
    if found != count:
        raise RuntimeError(f"{root} holds {found} files, not {count}")
