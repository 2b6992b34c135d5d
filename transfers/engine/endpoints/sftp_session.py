"""SSH connections for the SFTP transport: a private event loop, a small pool of connections, host-key
pinning, errors in the engine's terms, and `probe` (a farm account's "test connection").

asyncssh is asynchronous and the engine is not: each endpoint runs one asyncio loop in a daemon thread
and every call from the engine's threads is a coroutine submitted to it (`Session.run`). Connection 0
carries the many files in parallel (SFTP pipelines requests); the others carry a large file's ranges.

* Host key: a pinned key (an OpenSSH public-key line) must match before any authentication is tried;
  with no pin the key seen is accepted and kept (`seen_host_key`, `fingerprint`) for the caller to pin.
* A connection that drops or stops answering (keepalives, a timeout on every call) makes the call
  raise a ConnectionError (an OSError: the runner retries it); the next call connects again, with the
  same pin.
* Secrets (the password, the private key) live only in this object's private fields: never in a
  message, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncssh

from transfers.engine.endpoints.base import EndpointRefused

__all__ = [
    "DEFAULT_CIPHERS",
    "AuthFailed",
    "ConnectFailed",
    "HostKeyMismatch",
    "ProbeFailed",
    "ProbeResult",
    "Session",
    "as_os_error",
    "fingerprint_of",
    "key_fingerprint",
    "probe",
]

T = TypeVar("T")

# asyncssh logs every connection and channel at INFO: quiet it unless someone chose a level for it
if logging.getLogger("asyncssh").level == logging.NOTSET:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)

# aes128-gcm is ~1.9x faster than chacha20 on this class of machine (AES-NI); chacha20 next, then the
# rest of what OpenSSH offers, so an old server still connects.
DEFAULT_CIPHERS = (
    "aes128-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)


# What the server may send before we acknowledge (asyncssh's default: 2 MiB). A read's throughput is at most
# window / round trip: 2 MiB at 100 ms is 20 MB/s whatever the link; 8 MiB lets a far server's reads fill it.
RECEIVE_WINDOW = 8 << 20


class ConnectFailed(ConnectionError):
    """The SSH connection could not be made. `code`: refused, unreachable, timeout, auth, host_key, protocol."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(errno.ECONNREFUSED if code == "refused" else errno.EIO, message)
        self.code = code

    def __str__(self) -> str:
        return self.strerror or ""


class AuthFailed(ConnectFailed, EndpointRefused):
    def __init__(self, message: str) -> None:
        super().__init__("auth", message)


class HostKeyMismatch(ConnectFailed, EndpointRefused):
    def __init__(self, message: str, *, seen: str, fingerprint: str) -> None:
        super().__init__("host_key", message)
        self.seen, self.fingerprint = seen, fingerprint


def fingerprint_of(key: asyncssh.SSHKey) -> str:
    """`SHA256:...` as ssh-keygen -l prints it."""
    return str(key.get_fingerprint("sha256"))


def key_fingerprint(host_key: str) -> str:
    """The `SHA256:...` fingerprint of a public-key line; ValueError when it is not one."""
    key = _parse_pin(host_key)
    if key is None:
        raise ValueError("no host key given")
    return fingerprint_of(key)


def _key_line(key: asyncssh.SSHKey) -> str:
    """The key as an OpenSSH public-key line without its comment: `ssh-ed25519 AAAA...`."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


def _parse_pin(host_key: str) -> asyncssh.SSHKey | None:
    if not host_key.strip():
        return None
    try:
        return asyncssh.import_public_key(host_key.strip())
    except (asyncssh.KeyImportError, ValueError):
        raise ValueError("the pinned host key is not an OpenSSH public-key line ('ssh-ed25519 AAAA...')") from None


def _parse_private_key(private_key: str | None) -> asyncssh.SSHKey | None:
    if not private_key:
        return None
    try:
        return asyncssh.import_private_key(private_key)
    except (asyncssh.KeyImportError, ValueError):
        raise ValueError("the private key is not an unencrypted OpenSSH or PEM private key") from None


class _Secret:
    """A password kept out of every repr (a debugger's, a traceback's locals, vars())."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>"


class _Client(asyncssh.SSHClient):
    """Checks the server's host key against the pin (or accepts and records it when there is none)."""

    def __init__(self, pin: asyncssh.SSHKey | None, seen: list[asyncssh.SSHKey]) -> None:
        self._pin, self._seen = pin, seen

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self._seen.append(key)
        return self._pin is None or key == self._pin


@dataclass(frozen=True)
class _Settings:
    host: str
    port: int
    username: str
    keepalive_interval: float
    connect_timeout: float
    ciphers: tuple[str, ...]


class Session:
    """A pool of `connections` SSH connections (each with its SFTP client), opened on first use."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        password: str | None,
        private_key: str | None,
        host_key: str,
        connections: int,
        keepalive_interval: float,
        connect_timeout: float,
        op_timeout: float,
        ciphers: tuple[str, ...] = DEFAULT_CIPHERS,
    ) -> None:
        if not host or "\x00" in host:
            raise ValueError("the SFTP host is empty")
        if not 0 < int(port) < 65536:
            raise ValueError(f"the SFTP port {port!r} is not a TCP port")
        if not username:
            raise ValueError("the SFTP user name is empty")
        if not password and not private_key:
            raise ValueError("an SFTP account needs a password or a private key")
        self.settings = _Settings(host, int(port), username, keepalive_interval, connect_timeout, tuple(ciphers))
        self._password = _Secret(password) if password else None
        self._key = _parse_private_key(private_key)
        self._pin = _parse_pin(host_key)
        self.op_timeout = op_timeout
        self.size = max(1, connections)
        self.seen_host_key: str | None = None
        self.fingerprint: str | None = None
        self._slots: list[tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient] | None] = [None] * self.size
        self._locks: list[asyncio.Lock] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def __repr__(self) -> str:
        s = self.settings
        return f"<Session {s.username}@{s.host}:{s.port}>"

    def connected(self) -> int:
        """How many of the pool's connections are open now."""
        return sum(1 for slot in self._slots if slot is not None and not slot[0].is_closed())

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # --- the private loop -------------------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._starting:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name=f"rvweb-sftp-{self.address}", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
                self._locks = [asyncio.Lock() for _ in range(self.size)]
            return self._loop

    def run(self, work: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run a coroutine on the private loop and wait for it (OSError-class errors only, see as_os_error)."""
        loop = self._running_loop()
        future = asyncio.run_coroutine_threadsafe(work, loop)
        limit = self.op_timeout if timeout is None else timeout
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            future.cancel()
            self.drop_all()  # a server that stopped answering: connect again next time
            raise TimeoutError(errno.ETIMEDOUT, f"{self.address} did not answer within {limit:.0f} s") from None

    def close(self) -> None:
        """Close every connection and stop the loop; the session opens them again when used again."""
        with self._starting:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5)
        if thread is None or not thread.is_alive():
            loop.close()

    async def _close_all(self) -> None:
        for index in range(self.size):
            await self._drop(index)

    def drop_all(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(5)

    async def _drop(self, index: int) -> None:
        slot, self._slots[index] = self._slots[index], None
        if slot is not None:
            conn, sftp = slot
            sftp.exit()
            conn.abort()

    # --- connections ------------------------------------------------------------------------------

    async def sftp(self, index: int = 0) -> asyncssh.SFTPClient:
        """The SFTP client of connection `index` (connected, or connected again after a drop)."""
        index %= self.size
        slot = self._slots[index]
        if slot is not None and not slot[0].is_closed():
            return slot[1]
        async with self._locks[index]:
            slot = self._slots[index]
            if slot is not None and not slot[0].is_closed():
                return slot[1]
            if slot is not None:
                await self._drop(index)
            conn = await self._connect()
            try:
                sftp = await conn.start_sftp_client()
            except BaseException:
                conn.abort()
                raise
            self._slots[index] = (conn, sftp)
            return sftp

    async def guarded(self, index: int, work: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        """`work(sftp)` on connection `index`, its errors as OSErrors; a lost connection is dropped."""
        try:
            return await work(await self.sftp(index))
        except (asyncssh.Error, OSError, EOFError) as exc:
            error = as_os_error(exc)
            if isinstance(error, ConnectionError) and not isinstance(error, ConnectFailed):
                await self._drop(index % self.size)
            raise error from None

    async def _connect(self) -> asyncssh.SSHClientConnection:
        s = self.settings
        seen: list[asyncssh.SSHKey] = []
        options: dict[str, Any] = {
            "username": s.username,
            "known_hosts": ([], [], []),  # nothing trusted but what validate_host_public_key says
            "client_keys": [self._key] if self._key is not None else None,
            "password": self._password.value if self._password is not None else None,
            "agent_path": None,
            "config": None,
            "preferred_auth": "publickey,password" if self._key is not None else "password,keyboard-interactive",
            "encryption_algs": list(s.ciphers),
            "keepalive_interval": s.keepalive_interval,
            "keepalive_count_max": 3,
            "connect_timeout": s.connect_timeout,
            "login_timeout": s.connect_timeout * 3,
            "window": RECEIVE_WINDOW,
        }
        if self._pin is not None:
            options["server_host_key_algs"] = [self._pin.get_algorithm()]
        try:
            try:
                conn = await asyncssh.connect(s.host, s.port, client_factory=lambda: _Client(self._pin, seen), **options)
            except (asyncssh.Error, OSError) as exc:
                if self._pin is None or seen or isinstance(exc, ConnectionRefusedError | TimeoutError | socket.gaierror):
                    raise
                # The server has no host key of the pinned type (it dropped the key exchange): ask for any
                # key, so the mismatch is said as one, never as a network problem to retry for ever.
                del options["server_host_key_algs"]
                conn = await asyncssh.connect(s.host, s.port, client_factory=lambda: _Client(self._pin, seen), **options)
        except asyncssh.HostKeyNotVerifiable:
            if seen and self._pin is not None:
                raise HostKeyMismatch(
                    f"host key of {self.address} is {fingerprint_of(seen[-1])}, not the pinned {fingerprint_of(self._pin)}",
                    seen=_key_line(seen[-1]),
                    fingerprint=fingerprint_of(seen[-1]),
                ) from None
            raise ConnectFailed("host_key", f"host key of {self.address} could not be verified") from None
        except asyncssh.PermissionDenied:
            how = "key" if self._key is not None else "password"
            raise AuthFailed(f"authentication failed for user {s.username!r} at {self.address} (the {how} was refused)") from None
        except (asyncssh.Error, OSError) as exc:
            raise _connect_error(exc, self.address, s.connect_timeout) from None
        if seen:
            self.seen_host_key, self.fingerprint = _key_line(seen[-1]), fingerprint_of(seen[-1])
            if self._pin is None:
                self._pin = seen[-1]  # reconnects keep to the key first seen
        return conn


def _connect_error(exc: BaseException, address: str, timeout: float) -> ConnectFailed:
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailed("refused", f"cannot connect to {address}: connection refused (no SSH server on that port?)")
    if isinstance(exc, socket.gaierror):
        return ConnectFailed("unreachable", f"cannot connect to {address}: unknown host name")
    if isinstance(exc, TimeoutError):
        return ConnectFailed("timeout", f"cannot connect to {address}: no answer within {timeout:.0f} s")
    if isinstance(exc, OSError):
        return ConnectFailed("unreachable", f"cannot connect to {address}: {exc.strerror or type(exc).__name__}")
    reason = getattr(exc, "reason", "") or type(exc).__name__
    return ConnectFailed("protocol", f"SSH connection to {address} failed: {reason}")


_SFTP_ERRNO = {
    asyncssh.FX_NO_SUCH_FILE: errno.ENOENT,
    asyncssh.FX_PERMISSION_DENIED: errno.EACCES,
    asyncssh.FX_OP_UNSUPPORTED: errno.EOPNOTSUPP,
    asyncssh.FX_NO_SPACE_ON_FILESYSTEM: errno.ENOSPC,
    asyncssh.FX_QUOTA_EXCEEDED: errno.EDQUOT,
    asyncssh.FX_FILE_ALREADY_EXISTS: errno.EEXIST,
    asyncssh.FX_NOT_A_DIRECTORY: errno.ENOTDIR,
    asyncssh.FX_FILE_IS_A_DIRECTORY: errno.EISDIR,
}


def as_os_error(exc: BaseException) -> OSError:
    """An asyncssh error as the OSError the engine understands (lost connections: ConnectionError)."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, asyncssh.SFTPError):
        if exc.code in (asyncssh.FX_CONNECTION_LOST, asyncssh.FX_NO_CONNECTION):
            return ConnectionResetError(errno.ECONNRESET, "the SFTP connection was lost")
        code = _SFTP_ERRNO.get(exc.code, errno.EIO)
        message = str(exc.reason or "SFTP error")
        return OSError(code, message)
    if isinstance(exc, asyncssh.DisconnectError | EOFError):
        return ConnectionResetError(errno.ECONNRESET, "the SSH connection was lost")
    return OSError(errno.EIO, f"SFTP error: {type(exc).__name__}")


# --- probe: the farm account's "test connection" --------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    fingerprint: str  # SHA256:... of the server's host key
    host_key_line: str  # what to pin: "ssh-ed25519 AAAA..."
    free_bytes: int | None  # at the root (or the login folder), when the server tells
    root: str | None  # the root as the server resolves it (checked writable), when one was given
    cipher: str  # what was negotiated


class ProbeFailed(Exception):
    """What failed, in words for the lead. `code`: refused, unreachable, timeout, auth, host_key,
    protocol, root_missing, root_not_folder, root_not_writable."""

    def __init__(self, code: str, message: str, *, fingerprint: str | None = None, host_key_line: str | None = None) -> None:
        super().__init__(message)
        self.code, self.fingerprint, self.host_key_line = code, fingerprint, host_key_line


def probe(
    host: str,
    port: int,
    username: str,
    password: str | None = None,
    private_key: str | None = None,
    host_key: str = "",
    timeout: float = 10,
    *,
    root: str | None = None,
) -> ProbeResult:
    """Connect once, check the host key and the login, and (given `root`) that it is a writable folder."""
    try:
        session = Session(
            host=host,
            port=port,
            username=username,
            password=password,
            private_key=private_key,
            host_key=host_key,
            connections=1,
            keepalive_interval=timeout,
            connect_timeout=timeout,
            op_timeout=timeout * 4,
        )
    except ValueError as exc:
        raise ProbeFailed("settings", str(exc)) from None
    try:
        return session.run(_probe(session, root))
    except HostKeyMismatch as exc:
        raise ProbeFailed(exc.code, str(exc), fingerprint=exc.fingerprint, host_key_line=exc.seen) from None
    except ConnectFailed as exc:
        raise ProbeFailed(exc.code, str(exc)) from None
    except TimeoutError:
        raise ProbeFailed("timeout", f"{host}:{port} did not answer within {timeout * 4:.0f} s") from None
    finally:
        session.close()


async def _probe(session: Session, root: str | None) -> ProbeResult:
    sftp = await session.sftp(0)
    address = session.address
    resolved = None
    try:
        if root is not None:
            if not root.startswith("/"):
                raise ProbeFailed("root_missing", f"the root folder {root!r} is not an absolute path")
            try:
                attrs = await sftp.stat(root)
            except asyncssh.SFTPNoSuchFile:
                raise ProbeFailed("root_missing", f"the root folder {root} does not exist on {address}") from None
            if not attrs.permissions or (attrs.permissions & 0o170000) != 0o040000:
                raise ProbeFailed("root_not_folder", f"the root {root} on {address} is not a folder")
            resolved = await sftp.realpath(root)
            test = f"{resolved}/.rvweb-probe{id(session):x}.rvpart"
            try:
                async with await sftp.open(test, "wb") as file:
                    await file.write(b"rvweb")
                await sftp.remove(test)
            except asyncssh.SFTPError as exc:
                raise ProbeFailed(
                    "root_not_writable", f"cannot write in the root folder {root} on {address}: {exc.reason}"
                ) from None
        try:
            vfs = await sftp.statvfs(resolved or ".")
            free: int | None = vfs.bavail * vfs.frsize
        except asyncssh.SFTPError:
            free = None
    except (asyncssh.Error, OSError) as exc:
        raise ProbeFailed("protocol", f"SFTP on {address} failed: {as_os_error(exc).strerror}") from None
    slot = session._slots[0]
    cipher = str(slot[0].get_extra_info("send_cipher")) if slot is not None else ""
    return ProbeResult(session.fingerprint or "", session.seen_host_key or "", free, resolved, cipher)
