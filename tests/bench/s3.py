"""S3: one big file up to and down from `rclone serve s3` on loopback, rvweb's engine vs `rclone copy` to the same server.

Both sides write a key (or a local folder) never used before; ours is run_transfer with an S3Bucket
endpoint (multipart, parts of 16 MiB, the checksum kept as object metadata), rclone's is `rclone copy`
with an s3 remote defined in its environment (tests/servers/s3server.py). The server's folder is
under the scratch folder; the server is stopped at the end.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.bench.common import MB, Config, Row, drop_caches, interleaved, log, timed, write_random_file
from tests.servers.s3server import S3Server, rclone_remote
from transfers.engine.endpoints import LocalFiles, LocalFolder, S3Bucket
from transfers.engine.runner import Move, run_transfer


def bench(config: Config) -> list[Row]:
    size = (256 << 20) if config.quick else (2 << 30)
    source = config.root / "s3" / "source.bin"
    log(f"writing {size >> 20} MiB of random bytes to {source}")
    write_random_file(source, size)
    server = S3Server.start(config.root / "s3" / "served")
    try:
        return _bench(config, server, source, size)
    finally:
        server.stop()


def _bench(config: Config, server: S3Server, source: Path, size: int) -> list[Row]:
    argv, env = rclone_remote(server)
    endpoint = S3Bucket(**server.settings())  # type: ignore[arg-type]
    served = server.root / server.bucket

    def check(path: Path) -> None:
        if path.stat().st_size != size:
            raise RuntimeError(f"{path} has the wrong size")

    def ours_up(_: int) -> float:
        key = config.fresh("up-ours").name
        drop_caches(config)
        seconds = timed(
            lambda: _run(
                run_transfer(LocalFiles([source.parent]), endpoint, [Move(1, str(source), f"{key}/big.bin")], report=_quiet)
            )
        )
        check(served / key / "big.bin")
        return seconds

    def rclone_up(_: int) -> float:
        key = config.fresh("up-rclone").name
        drop_caches(config)
        seconds = timed(lambda: subprocess.run([*argv, "copy", str(source), f"RVS3:{server.bucket}/{key}"], env=env, check=True))
        check(served / key / source.name)
        return seconds

    up = interleaved(config.rounds, [("rvweb", ours_up), ("rclone copy", rclone_up)])
    stored = f"{config.fresh('down-source').name}/big.bin"
    _run(run_transfer(LocalFiles([source.parent]), endpoint, [Move(1, str(source), stored)], report=_quiet))

    def ours_down(_: int) -> float:
        local = config.fresh("down-ours")
        local.mkdir()
        drop_caches(config)
        folder = LocalFolder(local, allowed_roots=[config.root])

        def run() -> None:
            _run(run_transfer(endpoint, folder, [Move(1, stored, "big.bin")], report=_quiet))
            folder.sync()

        seconds = timed(run)
        folder.close()
        check(local / "big.bin")
        return seconds

    def rclone_down(_: int) -> float:
        local = config.fresh("down-rclone")
        drop_caches(config)
        seconds = timed(
            lambda: subprocess.run([*argv, "copy", f"RVS3:{server.bucket}/{stored}", str(local)], env=env, check=True)
        )
        check(local / "big.bin")
        return seconds

    down = interleaved(config.rounds, [("rvweb", ours_down), ("rclone copy", rclone_down)])
    endpoint.close()
    rows = []
    for number, what, series in ((15, "upload", up), (16, "download", down)):
        ours, theirs = series["rvweb"].median, series["rclone copy"].median
        ratio = theirs / ours
        rows.append(
            Row(
                number,
                f"S3 {what} of one {size >> 20} MiB file vs rclone copy (rclone serve s3, loopback)",
                ours=f"{size / MB / ours:,.0f} MB/s",
                baseline=f"{size / MB / theirs:,.0f} MB/s",
                ratio=ratio,
                ratio_text=f"{ratio:.2f}x",
                goal=">= 1x rclone copy",
                met=ratio >= 1.0,
                notes=[f"rvweb {series['rvweb'].describe()}", f"rclone copy {series['rclone copy'].describe()}"],
            )
        )
    return rows


def _quiet(_: object) -> None:
    pass


def _run(summary: object) -> None:
    if getattr(summary, "files_ok", 0) != 1:
        raise RuntimeError(f"the engine did not move the file: {summary}")
