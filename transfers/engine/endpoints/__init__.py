"""Endpoints: the places a run moves files between, one module per transport, one registry of them.

Adding a transport (SFTP, the vendor's transmitter, S3) is one module that implements the interface
of `base.py` (a Destination and, for downloads, a Source) plus one line in TRANSPORTS below; its
contract tests come for free (tests/engine/test_endpoint_contract.py runs every registered one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transfers.engine.endpoints.base import Destination, Endpoint, PartialBusy, Source, Stamp, StoredFile, VerifyFailed, stamp
from transfers.engine.endpoints.files import LocalFiles, PathSource
from transfers.engine.endpoints.local import LocalFolder, LocalStorage
from transfers.engine.endpoints.s3 import S3Bucket
from transfers.engine.endpoints.sftp import SftpFolder

__all__ = [
    "TRANSPORTS",
    "Destination",
    "Endpoint",
    "LocalFiles",
    "LocalFolder",
    "LocalStorage",
    "PartialBusy",
    "PathSource",
    "S3Bucket",
    "SftpFolder",
    "Source",
    "Stamp",
    "StoredFile",
    "VerifyFailed",
    "open_endpoint",
    "stamp",
]

# transport name -> factory of an endpoint (its keyword arguments are the transport's own settings)
TRANSPORTS: dict[str, Callable[..., Endpoint]] = {
    "local": LocalFolder,  # root, label, where, allowed_roots
    "sftp": SftpFolder,  # host, port, username, root, password | private_key, host_key, label, where, tuning
    "s3": S3Bucket,  # endpoint_url, bucket, prefix, access_key_id, secret_access_key, region, label, where, tuning
}


def open_endpoint(transport: str, /, **settings: Any) -> Endpoint:
    """An endpoint of a registered transport: `open_endpoint("local", root=..., label=...)`."""
    factory = TRANSPORTS.get(transport)
    if factory is None:
        raise ValueError(f"unknown transport {transport!r} (known: {', '.join(sorted(TRANSPORTS))})")
    return factory(**settings)
