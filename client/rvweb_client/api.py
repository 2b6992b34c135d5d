"""RayvisionAPI: the connection to rvweb (its REST API, a token), in the SDK's constructor's shape.

Only urllib and json: nothing to install beside this package.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from rvweb_client.exceptions import RayvisionError

_TERMINAL = frozenset({"completed", "completed_with_errors", "failed", "cancelled"})


class RayvisionAPI:
    """Where rvweb is, who the script is, and which farm account it works with.

    `RayvisionAPI(url="http://rvweb:8000", token="...")` (or RVWEB_URL / RVWEB_TOKEN in the environment).
    The SDK's keywords are accepted: `access_id` (with `domain` and `platform`) picks the rvweb farm
    account that holds that access id; `access_key` is never sent anywhere (rvweb keeps the account's
    own key, encrypted). `account=` (an id or a name) picks the account directly; with neither, the one
    account the token may see. `username`/`password` (HTTP Basic) work where no token is at hand.
    """

    def __init__(
        self,
        access_id: str | None = None,
        access_key: str | None = None,
        domain: str | None = None,
        platform: str | None = None,
        protocol: str = "https",
        logger: logging.Logger | None = None,
        log_folder: str | None = None,
        log_name: str | None = None,
        log_level: str = "DEBUG",
        timeout: float = 60,
        *,
        url: str | None = None,
        token: str | None = None,
        account: int | str | None = None,
        username: str | None = None,
        password: str | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        del access_key, protocol, log_folder, log_name  # the farm key stays in rvweb; rvweb's URL says the scheme
        url = url or os.environ.get("RVWEB_URL")
        if not url:
            raise RayvisionError(0, "give rvweb's address: RayvisionAPI(url='http://host:8000', token='...') or set RVWEB_URL")
        self.url = url.rstrip("/")
        self.token = token or os.environ.get("RVWEB_TOKEN")
        if not self.token and not (username and password):
            raise RayvisionError(0, "give a token (manage.py api_token <user> makes one), or username and password")
        self._basic = None if self.token else base64.b64encode(f"{username}:{password}".encode()).decode()
        self.access_id = access_id
        self.domain = domain
        self.platform = None if platform is None else str(platform)
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.logger = logger or logging.getLogger("rvweb_client")
        if logger is None and log_level:
            self.logger.setLevel(log_level)
        self._account_wanted = account
        self._account: dict[str, Any] | None = None

    # --- HTTP ---------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                content_type: str = "application/json") -> Any:  # fmt: skip
        """One call to rvweb; the decoded JSON answer. A refusal raises RayvisionError with rvweb's words."""
        target = path if path.startswith(("http://", "https://")) else self.url + path
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        headers["Authorization"] = f"Token {self.token}" if self.token else f"Basic {self._basic}"
        request = urllib.request.Request(target, data=data, method=method, headers=headers)  # noqa: S310 - rvweb's URL
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise RayvisionError(exc.code, f"{method} {path}: {_reason(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RayvisionError(0, f"cannot reach rvweb at {self.url}: {reason}") from None
        return json.loads(payload) if payload else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    def get_all(self, path: str) -> list[dict[str, Any]]:
        """Every row of a paged list (DRF's `results` / `next`)."""
        rows: list[dict[str, Any]] = []
        page: str | None = path
        while page:
            answer = self.get(page)
            if isinstance(answer, list):
                return rows + answer
            rows.extend(answer["results"])
            page = answer.get("next")
        return rows

    def post_file(self, path: str, fields: dict[str, str], name: str, content: bytes) -> Any:
        """A multipart/form-data POST of `fields` and one file (the manifest import)."""
        boundary = uuid.uuid4().hex
        parts: list[bytes] = []
        for key, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
        quoted = name.replace('"', "%22").replace("\r", "").replace("\n", "")
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
        parts.append(head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self.request("POST", path, raw=b"".join(parts), content_type=f"multipart/form-data; boundary={boundary}")

    # --- the farm account ---------------------------------------------------------------------------

    @property
    def account(self) -> dict[str, Any]:
        """The rvweb farm account this connection works with (looked up once)."""
        if self._account is None:
            self._account = self._find_account()
        return self._account

    @property
    def account_id(self) -> int:
        return int(self.account["id"])

    def _find_account(self) -> dict[str, Any]:
        wanted = self._account_wanted
        if isinstance(wanted, int) or (isinstance(wanted, str) and wanted.isdigit()):
            return dict(self.get(f"/api/accounts/{int(wanted)}/"))
        accounts = self.get_all("/api/accounts/")
        if isinstance(wanted, str):
            found = [a for a in accounts if a["name"] == wanted]
            what = f"named {wanted!r}"
        elif self.access_id:
            found = [a for a in accounts if a.get("access_id") == self.access_id]
            narrower = [a for a in found if self.platform in (None, a.get("platform")) and self.domain in (None, a.get("domain"))]
            found = narrower or found
            what = f"with access id {self.access_id!r}"
        else:
            found, what = accounts, "at all"
        if len(found) == 1:
            return dict(found[0])
        names = ", ".join(f"{a['name']} (id {a['id']})" for a in accounts) or "none"
        if not found:
            raise RayvisionError(404, f"no farm account {what} that this token may see; it sees: {names}")
        raise RayvisionError(0, f"{len(found)} farm accounts {what}: give account=<id or name> ({names})")

    # --- jobs -----------------------------------------------------------------------------------------

    def wait(self, path: str, *, print_log: bool = False, ended: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Poll `path` (a job or a group) until `ended` says so; log its progress when it changes."""
        last = ""
        while True:
            state = self.get(path)
            line = _progress_line(state)
            if line != last:
                self.logger.log(logging.INFO if print_log else logging.DEBUG, "%s %s", path, line)
                if print_log and not self.logger.handlers and not logging.getLogger().handlers:
                    print(f"{path} {line}", flush=True)
                last = line
            if ended(state):
                return dict(state)
            time.sleep(self.poll_interval)

    def wait_job(self, job_id: int, *, print_log: bool = False) -> dict[str, Any]:
        """A job once it has ended and its figures are final."""
        return self.wait(f"/api/jobs/{job_id}/", print_log=print_log, ended=_job_ended)

    def job_failures(self, job_id: int) -> list[dict[str, Any]]:
        return list(self.get(f"/api/jobs/{job_id}/failures/")["results"])

    def import_manifest(self, path: str, *, transmit_type: str = "upload_json") -> dict[str, Any]:
        """Send an upload.json (or an upload list) to rvweb, wait for it to be checked; the ready manifest."""
        try:
            with open(path, "rb") as handle:
                content = handle.read()
        except OSError as exc:
            raise RayvisionError(0, f"cannot read the manifest {path}: {exc.strerror or exc}") from None
        name = os.path.basename(os.path.dirname(os.path.abspath(path))) + "/" + os.path.basename(path)
        fields = {"name": name[-200:], "account": str(self.account_id), "transmit_type": transmit_type}
        manifest = self.post_file("/api/manifests/", fields, os.path.basename(path), content)
        manifest = self.wait(f"/api/manifests/{manifest['id']}/", ended=lambda m: m["state"] != "importing")
        if manifest["state"] != "ready":
            problems = "; ".join(_problem(p) for p in manifest.get("problems", [])[:20])
            raise RayvisionError(400, f"rvweb refused the manifest {path}: {problems}")
        return manifest


def _job_ended(job: dict[str, Any]) -> bool:
    live = job.get("live") or {}
    return bool(job.get("status") in _TERMINAL and live.get("settled", True))


def _progress_line(state: dict[str, Any]) -> str:
    if "state" in state and "entries_stored" in state:
        return f"{state['state']}: {state['entries_stored']} entries"
    return f"{state.get('status')}: {state.get('files_done', 0)} of {state.get('files_total', 0)} files" + (
        f", {state['files_failed']} failed" if state.get("files_failed") else ""
    )


def _problem(problem: dict[str, Any]) -> str:
    where = f"line {problem['line']}" if "line" in problem else f"entry {problem.get('entry')}"
    return f"{where}: {problem.get('reason')}"


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"null")
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):  # rvweb's one error shape
        error = body["error"]
        fields = error.get("fields") or {}
        said = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in fields.items())
        return f"{error.get('message', '')}{' (' + said + ')' if said else ''}"
    if isinstance(body, dict):
        if "detail" in body and len(body) == 1:
            return str(body["detail"])
        return "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in body.items())
    return {401: "not signed in: check the token", 403: "not allowed", 404: "not found"}.get(exc.code, str(exc.reason))
