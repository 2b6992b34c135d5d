"""An S3 farm: a studio's storage in a bucket of any S3-compatible server, its areas prefixes under the
account's own prefix (`<prefix>input/`, `<prefix>output/`, `<prefix>config/`).

The account gives the access key id (access id) and the secret (the access key, stored encrypted); its
storage settings give the endpoint URL, the bucket, the prefix and the region. Tasks come from farm
events, as on the local farm.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

from transfers.engine.endpoints import Endpoint, open_endpoint
from transfers.engine.endpoints import s3 as s3_transport
from transfers.engine.paths import PathRefused, clean_server_path
from transfers.farm.base import CheckStep, StorageInvalid, StorageSetting, TransferLine, check_area
from transfers.farm.storage import StorageFarm
from transfers.models import FarmAccount

_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-:_")  # urlsplit's hostname is lower-cased, [] dropped


class S3Farm(StorageFarm):
    kind = FarmAccount.Kind.S3
    transport = "s3"
    storage_settings = (
        StorageSetting("endpoint_url", "S3 endpoint URL", "e.g. https://s3.example.com or http://nas:9000", required=True),
        StorageSetting("bucket", "Bucket", required=True),
        StorageSetting("prefix", "Prefix", "e.g. studio/ (empty: the whole bucket).", default=""),
        StorageSetting("region", "Region", "us-east-1 unless the server says otherwise.", default="us-east-1"),
    )

    @classmethod
    def storage_more_checks(cls, checked: dict[str, Any]) -> dict[str, Any]:
        wrong = StorageInvalid("endpoint_url", "an http:// or https:// URL of the server, without credentials in it")
        try:
            url = urlsplit(checked["endpoint_url"])
            url.port  # noqa: B018 - raises ValueError for a port out of range, as every later use would
        except ValueError:
            raise wrong from None
        if url.scheme not in ("http", "https") or not url.hostname or url.username or url.password:
            raise wrong
        if not set(url.hostname) <= _HOST_CHARS:
            raise StorageInvalid("endpoint_url", "the server's name or IP address in it is not one (a space, a <?)")
        checked["endpoint_url"] = checked["endpoint_url"].rstrip("/")
        bucket = checked["bucket"]
        if not 3 <= len(bucket) <= 63 or not set(bucket) <= _BUCKET_CHARS or bucket[0] in ".-" or bucket[-1] in ".-":
            raise StorageInvalid("bucket", "3 to 63 lower-case letters, digits, dots and hyphens")
        prefix = checked.get("prefix", "").strip("/")
        if ".." in prefix.split("/") or "//" in prefix:
            raise StorageInvalid("prefix", "a prefix without .. or empty parts")
        if prefix:
            try:
                clean_server_path(prefix)  # as the transport reads it: a `..\\` is a .. there too
            except PathRefused:
                raise StorageInvalid("prefix", "a prefix without .. or empty parts") from None
        checked["prefix"] = f"{prefix}/" if prefix else ""
        return checked

    # A page asks once and waits 10 s (a worker: 3 requests of 60 s each).
    page_timeouts: ClassVar[dict[str, Any]] = {"connect_timeout": 5.0, "read_timeout": 10.0, "retries": 0}

    def _server(self) -> dict[str, Any]:
        storage = self.storage
        return {
            "endpoint_url": storage.get("endpoint_url", ""),
            "bucket": storage.get("bucket", ""),
            "access_key_id": self.account.access_id,
            "secret_access_key": self.account.access_key or "",
            "region": storage.get("region") or "us-east-1",
        }

    def open_area(self, name: str) -> Endpoint:
        prefix = f"{self.storage.get('prefix', '')}{check_area(name)}/"
        return open_endpoint(
            "s3",
            **self._server(),
            prefix=prefix,
            label=f'{name} storage of farm account "{self.account.name}"',
            where=f"the S3 bucket {self.storage.get('bucket', '')}",
            **self.tuning(),
        )

    def lines(self) -> list[TransferLine]:
        url = urlsplit(str(self.storage.get("endpoint_url", "")))
        port = url.port or (443 if url.scheme == "https" else 80)
        return [TransferLine(name="s3", engine="s3", server=url.hostname or "", port=port, is_default=True)]

    def check(self) -> list[CheckStep]:
        """Reach the server, sign in, find the bucket, write and remove an object under the prefix."""
        server = self._server()
        steps = s3_transport.probe(**server, prefix=self.storage.get("prefix", ""))
        return [CheckStep(found.step, found.ok, found.message) for found in steps]
