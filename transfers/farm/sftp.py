"""An SFTP farm: a studio's own farm or storage server reached over SSH, its areas folders under a base path.

The account gives the user name (access id), the password or the private key (the access key, stored
encrypted: a key is recognised by its `-----BEGIN` line) and, in its storage settings, the host, port,
base path and the server's host key. The host key is pinned on first use: the first connection (a "test
connection", or a job's) records the key the server showed, audited with its fingerprint; every later
connection must see the same key or stops before authenticating. A lead clears the pin to accept a new
key after a deliberate server change. Tasks come from farm events, as on the local farm.
"""

from __future__ import annotations

import logging
import posixpath
import re
import secrets
from functools import partial
from typing import Any, ClassVar

from transfers.engine.endpoints import Endpoint, open_endpoint
from transfers.engine.endpoints import sftp as sftp_transport
from transfers.farm.base import AREAS, CheckStep, StorageInvalid, StorageSetting, TransferLine, check_area
from transfers.farm.storage import StorageFarm, StorageUnavailable, step
from transfers.models import FarmAccount

logger = logging.getLogger(__name__)

_AWAY = ("refused", "unreachable", "timeout")  # a probe's failures that may pass by themselves
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]_")


class SftpFarm(StorageFarm):
    kind = FarmAccount.Kind.SFTP
    transport = "sftp"
    storage_settings = (
        StorageSetting("host", "SFTP host", "The server's name or IP address.", required=True),
        StorageSetting("port", "SFTP port", "22 unless the server says otherwise.", integer=True, default=22),
        StorageSetting(
            "base_path",
            "Base path",
            "An absolute folder on the server; it holds input/, output/, config/.",
            required=True,
        ),
        StorageSetting(
            "host_key",
            "Pinned host key",
            "The server's public host key (ssh-ed25519 AAAA...). Empty: pinned on the first connection.",
            learned=True,
        ),
    )

    # A page waits 5 s to connect and 15 s a call on one connection (a worker: 120 s a call).
    page_timeouts: ClassVar[dict[str, Any]] = {"connect_timeout": 5.0, "op_timeout": 15.0, "connections": 1}

    @classmethod
    def storage_more_checks(cls, checked: dict[str, Any]) -> dict[str, Any]:
        host = checked["host"]
        if not set(host) <= _HOST_CHARS or host.startswith("-"):
            raise StorageInvalid("host", f"{host!r} is not a host name or an IP address")
        base = checked["base_path"]
        if not base.startswith("/") or ".." in base.split("/"):
            raise StorageInvalid("base_path", "an absolute path on the server, without ..")
        checked["base_path"] = posixpath.normpath(base)
        key = checked.get("host_key", "")
        if "PRIVATE KEY" in key.upper():  # never echoed: the storage settings are shown to the whole team
            raise StorageInvalid(
                "host_key", "this is a private key: it goes in the access key; the host key is the server's public key"
            )
        if key:
            try:
                sftp_transport.key_fingerprint(key)  # a key the connection could not read fails every job later
            except ValueError:
                raise StorageInvalid(
                    "host_key", "an OpenSSH public key line: type and base64, e.g. ssh-ed25519 AAAA..."
                ) from None
        return checked

    # --- connecting ----------------------------------------------------------------------------------

    def _secrets(self) -> dict[str, str | None]:
        secret = self.account.access_key or ""
        if secret.lstrip().startswith("-----BEGIN"):
            return {"password": None, "private_key": pem_lines(secret)}
        return {"password": secret or None, "private_key": None}

    def _server(self) -> dict[str, Any]:
        storage = self.storage
        return {
            "host": storage.get("host", ""),
            "port": int(storage.get("port") or 22),
            "username": self.account.access_id,
            **self._secrets(),
        }

    def pinned_key(self) -> str:
        """The pinned host key; on first use, the key the server shows now, pinned (and audited) first."""
        pinned = str(self.storage.get("host_key") or "")
        if pinned:
            return pinned
        try:
            seen = sftp_transport.probe(**self._server(), host_key="")
        except sftp_transport.ProbeFailed as exc:  # retryable when the server was away, not when it refused us
            raise StorageUnavailable(f"{self._where()}: {exc}", retryable=exc.code in _AWAY) from None
        _pin(self.account, seen.host_key_line, seen.fingerprint)
        return str(self.account.storage.get("host_key") or seen.host_key_line)

    def _base(self, host_key: str) -> sftp_transport.SftpFolder:
        return sftp_transport.SftpFolder(
            **self._server(),
            host_key=host_key,
            root=self.storage.get("base_path", "/"),
            label="base",
            where=self._where(),
            **self.tuning(),
        )

    def _where(self) -> str:
        return f"the SFTP server {self.storage.get('host', '')}:{self.storage.get('port') or 22}"

    def ensure(self) -> SftpFarm:
        """Make the areas below the base path (the base path itself must be there: a typo makes nothing)."""
        base = self._base(self.pinned_key())
        try:
            for name in AREAS:
                base.make_folder(name)
        finally:
            base.close()
        self._ensured = True
        return self

    def open_area(self, name: str) -> Endpoint:
        if not getattr(self, "_ensured", False):
            self.ensure()  # once per connector: a job's first area finds the three there
        root = posixpath.join(self.storage.get("base_path", "/"), check_area(name))
        return open_endpoint(
            "sftp",
            **self._server(),
            host_key=self.pinned_key(),
            root=root,
            label=f'{name} storage of farm account "{self.account.name}"',
            where=self._where(),
            **self.tuning(),
        )

    # --- what pages show -----------------------------------------------------------------------------

    def lines(self) -> list[TransferLine]:
        storage = self.storage
        return [
            TransferLine(
                name="sftp",
                engine="sftp",
                server=str(storage.get("host", "")),
                port=int(storage.get("port") or 22),
                is_default=True,
                notes={"host key": _fingerprint_of(str(storage.get("host_key") or "")) or "not pinned yet"},
            )
        ]

    def check(self) -> list[CheckStep]:
        """Reach the server, pin or compare its host key, sign in, then each area: there (made if missing)
        and writable (a file written and removed), with the free space the server reports."""
        server = self._server()
        where = f"{server['host']}:{server['port']}"
        pinned = str(self.storage.get("host_key") or "")
        signing_in = f"connect to {where} and sign in as {server['username']!r}"
        try:
            seen = sftp_transport.probe(**server, host_key=pinned, root=self.storage.get("base_path", "/"))
        except sftp_transport.ProbeFailed as exc:
            return [
                CheckStep(signing_in, exc.code.startswith("root"), "signed in" if exc.code.startswith("root") else str(exc)),
                *([CheckStep("base path", False, str(exc))] if exc.code.startswith("root") else []),
            ]
        steps = [CheckStep(signing_in, True, f"signed in ({seen.cipher})")]
        if pinned:
            steps.append(CheckStep("host key", True, f"{seen.fingerprint}, as pinned"))
        else:
            _pin(self.account, seen.host_key_line, seen.fingerprint)
            steps.append(CheckStep("host key", True, f"{seen.fingerprint}, pinned now (first use): compare it with the server's"))
        steps.append(step("the areas input/, output/, config/", lambda: _made(self)))
        for name in AREAS:
            steps.append(step(f"{name} area is writable", partial(_writable, self, name)))
        free = f"{seen.free_bytes / 1e9:.1f} GB free" if seen.free_bytes is not None else "the server does not say"
        steps.append(CheckStep("free space", True, free))
        self.close()
        return steps


_PEM = re.compile(r"^\s*(-----BEGIN [A-Z0-9 ]+-----)(.*?)(-----END [A-Z0-9 ]+-----)\s*$", re.S)


def pem_lines(text: str) -> str:
    """A private key as its lines again: a password field (one line) drops the breaks of a pasted key,
    leaving the base64 body between its BEGIN and END markers; it is wrapped at 70 columns."""
    found = _PEM.match(text)
    if found is None:
        return text
    head, body, tail = found.groups()
    body = "".join(body.split())
    return "\n".join([head, *(body[at : at + 70] for at in range(0, len(body), 70)), tail]) + "\n"


def _writable(farm: SftpFarm, area: str) -> str:
    endpoint = farm.endpoint(area)
    probe_name = f".rvweb-check-{secrets.token_hex(4)}"  # two leads testing at once write two files
    with endpoint.open_partial(probe_name, 0) as handle:
        handle.write_at(b"rvweb", 0)
    endpoint.discard_partial(probe_name)
    return "a file was written and removed"


def _made(farm: SftpFarm) -> str:
    farm.ensure()
    return "there (made where missing)"


def _fingerprint_of(key_line: str) -> str:
    if not key_line:
        return ""
    try:
        return sftp_transport.key_fingerprint(key_line)
    except ValueError:
        return "unreadable"


def _pin(account: FarmAccount, key_line: str, fingerprint: str) -> None:
    """Pin the host key the server showed, unless another connection pinned one meanwhile (that one stays)."""
    from django.db import transaction

    from transfers.services import audit_record

    with transaction.atomic():
        locked = FarmAccount.objects.select_for_update().only("storage").get(pk=account.pk)
        storage = dict(locked.storage or {})
        if storage.get("host_key"):
            account.storage = storage
            return
        storage["host_key"] = key_line
        FarmAccount.objects.filter(pk=account.pk).update(storage=storage)
        account.storage = storage
        audit_record(
            actor=None, action="account.host_key_pin", target=account, after={"host_key": fingerprint, "first_use": True}
        )
    logger.info("farm account %s: host key %s pinned on first use", account.pk, fingerprint)
