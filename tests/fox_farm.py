"""A fake Fox Renderfarm / Renderbus REST API on 127.0.0.1, for the connector's tests (and later the
transmitter's): it checks what the real farm checks, holds an account's state, and fails on demand.

Every request must be a POST with a JSON body, the SDK's headers, and a signature made with the
account's key over `[POST]<host:port>:<path>&...` (computed here independently of the client's code);
a request that fails these is answered with code 611 (or 602 for an unknown access id) and kept in
`rejected`. The `fox_farm` fixture fails the test at teardown if any request was rejected, unless the
test said it expects rejections (`expect_rejections()`).

Output storage is a real directory, `storage_root/output/<output_bid>-<user_id>/`, listed through
getOutputUserDirFile: the fake transmitter (tests/fake_transmitter, with FAKE_FOX_STORAGE = storage_root)
reads the same files, and writes uploads to `storage_root/input/<storage id>-<user id>/`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

FARM_TIME = timezone(timedelta(hours=8))
STATUS_CODES = (0, 5, 8, 10, 15, 20, 23, 25, 30, 35, 40, 45, 50, 100, None)
SIGNED = ("accessId", "channel", "platform", "UTCTimestamp", "nonce", "version")


@dataclass
class FakeAccount:
    access_id: str
    access_key: str
    user_id: int
    user_name: str
    bids: dict[str, Any]
    main_user_id: int = 0
    share_main_capital: int = 0
    download_disable: int = 0
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)


def task_info(task_id: int, status: int | None, scene: str = "shot", **extra: Any) -> dict[str, Any]:
    """A TaskInfo as queryTaskInfo/v2 gives it (the fields the connector reads, and a few more)."""
    return {
        "id": task_id,
        "taskAlias": f"2W{task_id}",
        "sceneName": scene,
        "taskStatus": status,
        "statusText": f"render_task_status_{status}",
        "outputFileName": f"{task_id}_{scene}",
        "totalFrames": 3,
        "isOpen": 0,
        "layerParentId": 0,
        "respRenderingTaskList": None,
        **extra,
    }


class FarmServer:
    """The HTTP server, started once for a session; each test's fake farm takes it over (`serving`)."""

    def __init__(self) -> None:
        self.http = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        self.serving: FoxFarmFake | None = None
        self.http.expect_request(re.compile(r"^/.*")).respond_with_handler(self._handle)

    def _handle(self, request: Request) -> Response:
        if self.serving is None:
            return Response("no fake farm is serving", status=503)
        return self.serving._handle(request)

    def start(self) -> FarmServer:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.clear()
        if self.http.is_running():
            self.http.stop()


class FoxFarmFake:
    """One test's farm: its accounts, tasks, lines, output storage and injected failures."""

    def __init__(self, storage_root: Path, server: FarmServer) -> None:
        self.storage_root = storage_root
        self.server = server
        self.requests: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.rejections_expected = False
        self.failures: deque[dict[str, Any]] = deque()
        self.engines: list[dict[str, Any]] = []
        self.main = FakeAccount(
            "AKID-FOX-MAIN",
            "fox-main-secret-key",
            100001,
            "studio-main",
            {"input_bid": "10201", "output_bid": "20201", "config_bid": "30201", "parent_input_bid": "10201"},
        )
        self.sub = FakeAccount(
            "AKID-FOX-SUB",
            "fox-sub-secret-key",
            100002,
            "studio-sub",
            {"input_bid": "10202", "output_bid": "20202", "config_bid": "30202", "parent_input_bid": "10201"},
            main_user_id=100001,
            share_main_capital=1,
        )
        self.main.bids["sub_user_output_bids"] = [{"userId": 100002, "outputBid": "20202"}]
        self.accounts = {account.access_id: account for account in (self.main, self.sub)}
        self._seed_tasks()
        self.set_lines("Aspera", [("HKCT", 9, True)])

    # --- the fixture's API -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.http.port}"

    def account_kwargs(self, who: str = "main") -> dict[str, str]:
        account = self.sub if who == "sub" else self.main
        return {"domain": self.url, "access_id": account.access_id, "access_key": account.access_key, "platform": "2"}

    def output_dir(self, who: str = "main") -> Path:
        account = self.sub if who == "sub" else self.main
        path = self.storage_root / "output" / f"{account.bids['output_bid']}-{account.user_id}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def input_dir(self, who: str = "main") -> Path:
        """Where the fake transmitter puts an account's uploads (a sharing sub-account's: the main input)."""
        account = self.sub if who == "sub" else self.main
        if account.share_main_capital:
            return self.storage_root / "input" / f"{account.bids['parent_input_bid']}-{account.main_user_id}"
        return self.storage_root / "input" / f"{account.bids['input_bid']}-{account.user_id}"

    def add_output(self, path: str, data: bytes | int = 0, *, who: str = "main", mtime: float | None = None) -> Path:
        """A file of the output area (bytes, or that many zero bytes); its mtime when given."""
        target = self.output_dir(who) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data if isinstance(data, bytes) else b"\0" * data)
        if mtime is not None:
            os.utime(target, (mtime, mtime))
        return target

    def set_lines(self, engine: str, lines: list[tuple[str, int, bool]], *, server: str = "127.0.0.1") -> None:
        """Replace one engine's lines in getConfig: (name, port, is_default) each, all on `server`."""
        self.engines = [e for e in self.engines if e["engineName"] != engine]
        rows = [
            {"name": name, "server": server, "port": str(port), "isDefault": int(default), "lineId": i, "type": 0}
            for i, (name, port, default) in enumerate(lines)
        ]
        self.engines.append({"engineName": engine, "isDefault": int(not self.engines), "respTaskEngineLines": rows})

    def fail_next(
        self, code: int | None = None, *, http_status: int = 200, body: str | None = None, delay: float = 0.0, times: int = 1
    ) -> None:
        """The next `times` calls: an envelope with this code, or this HTTP status and raw body, after `delay`."""
        for _ in range(times):
            self.failures.append({"code": code, "http_status": http_status, "body": body, "delay": delay})

    def expect_rejections(self) -> None:
        self.rejections_expected = True

    def calls(self, path: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if path is None or r["path"] == path]

    def start(self) -> FoxFarmFake:
        self.server.serving = self
        return self

    def stop(self) -> None:
        self.server.serving = None

    # --- state ---------------------------------------------------------------------------------------

    def _seed_tasks(self) -> None:
        self.main.tasks[1001] = task_info(1001, 25, "done_shot")
        children = [
            task_info(2002, 5, "layers", layerParentId=2001, layerName="beauty", outputFileName="2001_layers/beauty"),
            task_info(2003, 25, "layers", layerParentId=2001, layerName="shadow", outputFileName="2001_layers/shadow"),
        ]
        self.main.tasks[2001] = task_info(2001, 5, "layers", isOpen=1, respRenderingTaskList=children)
        self.main.tasks[2004] = task_info(2004, 25, "shell", isOpen=1, respRenderingTaskList=None)
        for code in STATUS_CODES:
            task_id = 3000 + (999 if code is None else code)
            self.main.tasks[task_id] = task_info(task_id, code, f"status_{code}")
        self.sub.tasks[4001] = task_info(4001, 25, "sub_shot")

    # --- the wire ------------------------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        body_text = request.get_data(as_text=True)
        record = {"path": request.path, "method": request.method, "headers": dict(request.headers), "body": None}
        self.requests.append(record)
        problem, account = self._refusal(request, body_text, record)
        if problem:
            self.rejected.append({**record, "why": problem[1]})
            return _envelope(problem[0], None, problem[1])
        assert account is not None
        if self.failures:
            failure = self.failures.popleft()
            time.sleep(failure["delay"])
            if failure["body"] is not None or failure["http_status"] != 200:
                return Response(failure["body"] or "", status=failure["http_status"], content_type="text/html")
            if failure["code"] is not None:
                return _envelope(failure["code"], None, "injected failure")
        route = ROUTES.get(request.path)
        if route is None:
            return _envelope(404, None, f"no such API: {request.path}")
        try:
            return _envelope(200, route(self, account, record["body"]))
        except LookupError as exc:
            return _envelope(600, None, str(exc))

    def _refusal(self, request: Request, text: str, record: dict[str, Any]) -> tuple[tuple[int, str] | None, FakeAccount | None]:
        if request.method != "POST":
            return (400, f"method {request.method}, not POST"), None
        if request.headers.get("Content-Type", "").split(";")[0] != "application/json":
            return (400, "Content-Type is not application/json"), None
        if not text.isascii():
            return (400, "the body is not ASCII-escaped JSON"), None
        try:
            body = json.loads(text)
        except ValueError:
            return (400, "the body is not JSON"), None
        record["body"] = body
        headers = request.headers
        account = self.accounts.get(headers.get("accessId", ""))
        if account is None:
            return (602, "unknown accessId"), None
        wrong = [
            name
            for name, good in (
                ("channel", headers.get("channel") == "4"),
                ("version", headers.get("version") == "2.0.0"),
                ("platform", bool(headers.get("platform"))),
                ("nonce", re.fullmatch(r"\d{6}", headers.get("nonce", "")) is not None),
                ("UTCTimestamp", abs(time.time() - float(headers.get("UTCTimestamp") or 0)) < 300),
                ("languageFlag", headers.get("languageFlag") == "0"),
            )
            if not good
        ]
        if wrong:
            return (611, f"bad headers: {', '.join(wrong)}"), None
        params = {name: headers.get(name, "") for name in SIGNED}
        if headers.get("signature") != _sign(account.access_key, request.host, request.path, {**params, **body}):
            return (611, "signature invalid"), None
        return None, account


def _sign(key: str, host: str, path: str, params: dict[str, Any]) -> str:
    flat: dict[str, str] = {}

    def add(name: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                add(f"{name}.{k}" if name else k, v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                add(f"{name}{i}", v)
        else:
            flat[name] = str(value)

    add("", params)
    message = f"[POST]{host}:{path}&" + "&".join(f"{k}={flat[k]}" for k in sorted(flat))
    return base64.b64encode(hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()).decode()


def _envelope(code: int, data: Any, message: str = "success") -> Response:
    payload = {
        "version": "2.0.0",
        "result": code == 200,
        "message": message,
        "code": code,
        "serverTime": 0,
        "requestId": "r1",
        "data": data,
    }
    return Response(json.dumps(payload), status=200, content_type="application/json")


# --- the API, by path ----------------------------------------------------------------------------------


def _profile(farm: FoxFarmFake, me: FakeAccount, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "userId": me.user_id,
        "userName": me.user_name,
        "platform": 2,
        "zone": 2,
        "mainUserId": me.main_user_id,
        "shareMainCapital": me.share_main_capital,
        "downloadDisable": me.download_disable,
        "accountType": 2 if me.main_user_id else 1,
    }


def _setting(farm: FoxFarmFake, me: FakeAccount, body: dict[str, Any]) -> dict[str, Any]:
    return {"shareMainCapital": me.share_main_capital, "downloadDisable": me.download_disable, "downloadLimit": 0}


def _config(farm: FoxFarmFake, me: FakeAccount, body: dict[str, Any]) -> dict[str, Any]:
    bids = me.bids
    return {
        "inputBid": bids["input_bid"],
        "outputBid": bids["output_bid"],
        "configBid": bids["config_bid"],
        "resqEngines": farm.engines,
    }


def _task_list(farm: FoxFarmFake, me: FakeAccount, body: dict[str, Any]) -> dict[str, Any]:
    page, size = int(body.get("pageNum", 1)), int(body.get("pageSize", 10))
    wanted = body.get("statusList") or None
    items = [t for _, t in sorted(me.tasks.items(), reverse=True) if wanted is None or t["taskStatus"] in wanted]
    count = max(1, -(-len(items) // size))
    return {
        "pageCount": count,
        "pageNum": page,
        "total": len(items),
        "size": size,
        "items": items[(page - 1) * size : page * size],
    }


def _task_info(farm: FoxFarmFake, me: FakeAccount, body: dict[str, Any]) -> dict[str, Any]:
    ids = body.get("taskIds")
    if not isinstance(ids, list) or not ids:
        raise LookupError("taskIds is required")
    everything = dict(me.tasks)
    for task in me.tasks.values():
        everything.update({child["id"]: child for child in task.get("respRenderingTaskList") or []})
    items = [everything[task_id] for task_id in ids if task_id in everything]
    return {"pageCount": 1, "pageNum": 1, "total": len(items), "size": len(items), "items": items}


def _frames(farm: FoxFarmFake, me: FakeAccount, body: dict[str, Any]) -> dict[str, Any]:
    task_id = int(body["taskId"])
    items = [{"id": task_id * 10 + i, "taskId": task_id, "frameIndex": f"{i}-{i}", "frameStatus": 4} for i in range(1, 4)]
    return {"pageCount": 1, "pageNum": 1, "total": 3, "size": 100, "items": items}


def _outputs(farm: FoxFarmFake, me: FakeAccount, body: dict[str, Any]) -> list[dict[str, Any]]:
    tree = str(body.get("treePath") or "/").strip("/")
    if ".." in tree.split("/"):
        raise LookupError("treePath leaves the output area")
    folder = farm.output_dir("sub" if me is farm.sub else "main") / tree
    if not folder.is_dir():
        return []
    rows = []
    for entry in sorted(folder.iterdir()):
        info = entry.stat()
        rows.append(
            {
                "fileName": entry.name,
                "fileSize": None if entry.is_dir() else info.st_size,
                "lastModify": datetime.fromtimestamp(info.st_mtime, FARM_TIME).strftime("%Y-%m-%d %H:%M:%S"),
                "fileType": None if entry.is_dir() else entry.suffix.lstrip("."),
                "filePath": "/" + f"{tree}/{entry.name}".strip("/"),
                "directory": entry.is_dir(),
                "isArrears": 0,
            }
        )
    return rows


ROUTES = {
    "/api/render/setUp/queryUserProfile": _profile,
    "/api/render/setUp/queryUserSetting": _setting,
    "/api/render/transfer/getBid": lambda farm, me, body: me.bids,
    "/api/render/transfer/getConfig": _config,
    "/api/render/handle/getTaskList/v2": _task_list,
    "/api/render/handle/queryTaskInfo/v2": _task_info,
    "/api/render/handle/queryTaskFrames": _frames,
    "/api/render/file/operate/getOutputUserDirFile": _outputs,
    "/api/render/submit/createTask": lambda farm, me, body: {
        "taskIdList": [9001],
        "aliasTaskIdList": ["2W9001"],
        "userId": me.user_id,
    },
}
