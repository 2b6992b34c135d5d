"""A real OpenSSH sshd for the SFTP transport's tests and benchmarks, on 127.0.0.1 and a free port.

Everything it needs lives in one temporary folder: its ed25519 host key, the user's key pair and
authorized_keys, its config, pid file and log. Only public-key login for the current user (root may
log in with a key: `PermitRootLogin prohibit-password`); the system's own sshd and users are untouched.
`/run/sshd` (privilege separation) is made when missing.

    with Sshd.start(tmp) as server:
        endpoint = SftpFolder(**server.endpoint_settings(root=...))
        subprocess.run([*server.ssh_argv("sftp"), "-b", batch, server.target])
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path, comment: str) -> None:
    path.unlink(missing_ok=True)  # a folder used before: ssh-keygen would ask before overwriting
    path.with_name(path.name + ".pub").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)


def _fingerprint(public_key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key)], check=True, capture_output=True, text=True)
    return out.stdout.split()[1]


@dataclass
class Sshd:
    """A running sshd. `host_key`: its public-key line ("ssh-ed25519 AAAA..."), `fingerprint`: SHA256:..."""

    host: str
    port: int
    username: str
    private_key: str  # the user's key, OpenSSH text
    host_key: str
    fingerprint: str
    folder: Path  # the server's own files (keys, config, log)
    process: subprocess.Popen[bytes] = field(repr=False)

    @classmethod
    def start(cls, folder: Path, *, extra_config: str = "") -> Sshd:
        if not os.path.exists(SSHD):
            raise RuntimeError(f"{SSHD} is missing: install Debian's openssh-server package (make test does)")
        with contextlib.suppress(PermissionError):  # not root: sshd says in its log if it needs it
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege-separation folder
        folder.mkdir(parents=True, exist_ok=True)
        _keygen(folder / "host_ed25519", "rvweb-test-host")
        _keygen(folder / "user_ed25519", "rvweb-test-user")
        (folder / "authorized_keys").write_text((folder / "user_ed25519.pub").read_text())
        port = _free_port()
        subsystem = SFTP_SERVER if os.path.exists(SFTP_SERVER) else "internal-sftp"
        (folder / "sshd_config").write_text(
            f"""ListenAddress 127.0.0.1
Port {port}
HostKey {folder / "host_ed25519"}
PidFile {folder / "sshd.pid"}
AuthorizedKeysFile {folder / "authorized_keys"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowUsers {getpass.getuser()}
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
LogLevel ERROR
MaxSessions 64
MaxStartups 64:30:100
Subsystem sftp {subsystem}
{extra_config}
"""
        )
        log = open(folder / "sshd.log", "ab")  # noqa: SIM115 - the server's, closed with it
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")], stdout=log, stderr=log)
        log.close()
        host_key = " ".join((folder / "host_ed25519.pub").read_text().split()[:2])
        server = cls(
            "127.0.0.1",
            port,
            getpass.getuser(),
            (folder / "user_ed25519").read_text(),
            host_key,
            _fingerprint(folder / "host_ed25519.pub"),
            folder,
            process,
        )
        server._wait_listening()
        return server

    def _wait_listening(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited at start: {(self.folder / 'sshd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on {self.host}:{self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        self.kill_sessions()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Sshd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def sessions(self) -> list[int]:
        """The pids of the sshd processes serving connections now (the listener's children, and theirs)."""
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found.append(child)
                todo.append(child)
        return found

    def kill_sessions(self) -> int:
        """Kill every connection's server processes (a dropped connection, as the client sees it)."""
        pids = self.sessions()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in pids):
            time.sleep(0.01)
        return len(pids)

    @property
    def target(self) -> str:
        return f"{self.username}@{self.host}"

    def endpoint_settings(self, **more: Any) -> dict[str, Any]:
        """Keyword arguments of SftpFolder for this server (pinned to its host key)."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "private_key": self.private_key,
            "host_key": self.host_key,
            **more,
        }

    def ssh_config(self) -> Path:
        """An ssh_config for OpenSSH's own clients (ssh, scp, sftp) against this server."""
        path = self.folder / "ssh_config"
        known = self.folder / "known_hosts"
        known.write_text(f"[{self.host}]:{self.port} {self.host_key}\n")
        path.write_text(
            f"""Host rvweb-test-sshd
    HostName {self.host}
    Port {self.port}
    User {self.username}
    IdentityFile {self.folder / "user_ed25519"}
    IdentitiesOnly yes
    UserKnownHostsFile {known}
    StrictHostKeyChecking yes
    BatchMode yes
    LogLevel ERROR
"""
        )
        return path

    def ssh_argv(self, tool: str = "ssh", *, cipher: str | None = None) -> list[str]:
        """The argv prefix of `ssh`, `scp` or `sftp` for this server; the host to name is `rvweb-test-sshd`."""
        argv = [tool, "-F", str(self.ssh_config())]
        if cipher:
            argv += ["-c", cipher]
        return argv


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


_shared: Sshd | None = None


def shared_sshd() -> Sshd:
    """One sshd for the whole test session (started on first use, stopped at exit)."""
    global _shared
    if _shared is None or _shared.process.poll() is not None:
        import atexit
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="rvweb-sshd-"))
        _shared = server = Sshd.start(folder / "server")

        def stop() -> None:
            server.stop()
            shutil.rmtree(folder, ignore_errors=True)

        atexit.register(stop)
    return _shared
