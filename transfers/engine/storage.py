"""Where the storage backends went: transfers.engine.endpoints (kept so existing imports keep working).

`Storage` is the destination side of an endpoint; `LocalStorage` is the local transport's folder.
"""

from __future__ import annotations

from transfers.engine.endpoints.base import Destination, PartialBusy, Stamp, StoredFile, VerifyFailed, stamp
from transfers.engine.endpoints.local import FILE_MODE, FOLDER_MODE, LocalStorage
from transfers.engine.paths import PARTIAL_SUFFIX

Storage = Destination

__all__ = [
    "FILE_MODE",
    "FOLDER_MODE",
    "PARTIAL_SUFFIX",
    "LocalStorage",
    "PartialBusy",
    "Stamp",
    "Storage",
    "StoredFile",
    "VerifyFailed",
    "stamp",
]
