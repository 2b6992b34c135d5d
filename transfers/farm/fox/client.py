"""The farm's REST API (reference/sdk-spec.md §7): signed JSON POSTs, the `code == 200` envelope, typed errors.

Unlike the SDK's client (§8 #18, #20, #27, #30) it retries only what is safe to send twice (queries)
and only failures that may pass (network, timeouts, server errors, an expired timestamp), with a
bounded exponential backoff and jitter; it logs neither the key nor the signature; it refuses at once
an account without an access id or key; and constructing it calls nothing.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import urlsplit

import requests

from transfers.farm.fox.errors import FoxBadResponse, FoxCredentialsMissing, FoxError, FoxUnreachable, api_error, is_retryable
from transfers.farm.fox.signing import signature

logger = logging.getLogger(__name__)

CHANNEL = "4"
VERSION = "2.0.0"
PROFILE = "/api/render/setUp/queryUserProfile"
SETTINGS = "/api/render/setUp/queryUserSetting"
BIDS = "/api/render/transfer/getBid"
CONFIG = "/api/render/transfer/getConfig"
TASK_LIST = "/api/render/handle/getTaskList/v2"
TASK_INFO = "/api/render/handle/queryTaskInfo/v2"
FRAMES = "/api/render/handle/queryTaskFrames"
OUTPUT_FILES = "/api/render/file/operate/getOutputUserDirFile"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")  # where plain http is allowed: a test farm on this machine


class FoxClient:
    """One farm account's API. `domain` is the farm's host (https), or a URL with its scheme
    (`http://127.0.0.1:8080` for a fake farm); the signature covers the bare host[:port]."""

    def __init__(
        self,
        domain: str,
        access_id: str,
        access_key: str,
        platform: str,
        *,
        timeout: float | tuple[float, float] = (5, 60),
        session: requests.Session | None = None,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        allowed_hosts: Collection[str] | None = None,
    ) -> None:
        if not (access_id or "").strip():
            raise FoxCredentialsMissing("the farm account has no access id: give the one from the farm's developer centre")
        if not access_key:
            raise FoxCredentialsMissing("the farm account has no access key: give the one from the farm's developer centre")
        given = domain.strip().rstrip("/") or "task.foxrenderfarm.com"
        parts = urlsplit(given if "://" in given else f"https://{given}")
        if not parts.netloc:
            raise FoxError(f"{domain!r} is not a farm domain (e.g. task.foxrenderfarm.com)")
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
            raise FoxError(f"{domain!r}: the farm is reached over https (plain http only on this machine, for a test farm)")
        allowed = {host.strip().lower() for host in allowed_hosts or ()}
        if allowed_hosts is not None and "*" not in allowed and (parts.hostname or "").lower() not in allowed:
            raise FoxError(
                f"{parts.hostname!r} is not a farm domain this server may reach (RVWEB_FOX_DOMAINS: {', '.join(sorted(allowed))})"
            )
        self.host = parts.netloc
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self.access_id = access_id.strip()
        self._key = access_key
        self.platform = str(platform)
        self.language_flag = "1" if "renderbus" in self.host else "0"
        self.timeout = timeout
        self.session = session or requests.Session()
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"FoxClient({self.base_url!r}, access_id={self.access_id!r}, platform={self.platform!r})"

    # --- the calls -----------------------------------------------------------------------------------

    def user_profile(self) -> dict[str, Any]:
        return _object(self.call(PROFILE))

    def user_settings(self) -> dict[str, Any]:
        return _object(self.call(SETTINGS))

    def bids(self) -> dict[str, Any]:
        return _object(self.call(BIDS))

    def transfer_config(self) -> dict[str, Any]:
        return _object(self.call(CONFIG))

    def task_list(self, page: int = 1, page_size: int = 100, status_list: list[int] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"pageNum": page, "pageSize": page_size}
        if status_list:
            body["statusList"] = [int(code) for code in status_list]
        return _object(self.call(TASK_LIST, body))

    def task_info(self, task_ids: list[int]) -> dict[str, Any]:
        return _object(self.call(TASK_INFO, {"taskIds": [int(task_id) for task_id in task_ids]}))

    def frames(self, task_id: int, page: int = 1, page_size: int = 100) -> dict[str, Any]:
        return _object(self.call(FRAMES, {"taskId": int(task_id), "pageNum": page, "pageSize": min(page_size, 100)}))

    def output_files(self, tree_path: str, task_id: int | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"treePath": tree_path or "/"}
        if task_id is not None:
            body["taskId"] = int(task_id)
        data = self.call(OUTPUT_FILES, body)
        return [entry for entry in data if isinstance(entry, dict)] if isinstance(data, list) else []

    # --- the wire ------------------------------------------------------------------------------------

    def call(self, path: str, body: dict[str, Any] | None = None, *, idempotent: bool = True) -> Any:
        """POST `body` to `path`; the envelope's `data` when its code is 200, else a FoxError. Only an
        idempotent call is tried again, and only after a failure that may pass."""
        tries = self.attempts if idempotent else 1
        for attempt in range(1, tries + 1):
            try:
                return self._post(path, body or {})
            except FoxError as exc:
                if attempt == tries or not is_retryable(exc):
                    raise
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                logger.info("farm call %s failed (%s); attempt %d of %d in %.1fs", path, exc, attempt + 1, tries, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _headers(self, path: str, body: dict[str, Any]) -> dict[str, str]:
        signed = {
            "accessId": self.access_id,
            "channel": CHANNEL,
            "platform": self.platform,
            "UTCTimestamp": str(int(time.time())),
            "nonce": str(100000 + secrets.randbelow(899999)),
            "version": VERSION,
        }
        return {
            **signed,
            "signature": signature(self._key, host=self.host, path=path, headers=signed, body=body),
            "Content-Type": "application/json",
            "languageFlag": self.language_flag,
        }

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        data = json.dumps(body, ensure_ascii=True)
        started = time.monotonic()
        try:
            response = self.session.post(self.base_url + path, data=data, headers=self._headers(path, body), timeout=self.timeout)
        except requests.Timeout as exc:
            raise FoxUnreachable(f"the farm at {self.host} did not answer {path} in time") from exc
        except requests.RequestException as exc:
            raise FoxUnreachable(f"the farm at {self.host} cannot be reached for {path}: {type(exc).__name__}") from exc
        took = time.monotonic() - started
        try:
            envelope = response.json()
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or "code" not in envelope:
            raise FoxBadResponse(
                f"the farm at {self.host} answered {path} with HTTP {response.status_code} and no API envelope",
                http_status=response.status_code,
            )
        code = envelope.get("code")
        logger.debug("farm %s: code %s in %.2fs (request id %s)", path, code, took, envelope.get("requestId"))
        if code != 200:
            number = code if isinstance(code, int) and not isinstance(code, bool) else -1
            raise api_error(number, str(envelope.get("message") or ""), path)
        return envelope.get("data")


def _object(data: Any) -> dict[str, Any]:
    """A call's data that should be an object: {} for a null one (the farm sends null for "nothing")."""
    return data if isinstance(data, dict) else {}
