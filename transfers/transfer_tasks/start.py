"""Starting a transfer task: the SDK's start_transfer (reference/sdk-spec.md §5.3) as a new TransferJob,
made through transfers.jobs.job_create. The code table: transfers.transfer_tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict

import msgspec
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest

from transfers import kinds, manifest_store, selectors, services
from transfers.accounts import options_for
from transfers.engine.localfs import LocalTree, NotAFile
from transfers.engine.manifest import ManifestEntry, ManifestInvalid, encode_upload_json, expand_upload_list
from transfers.engine.paths import PathMap, PathRefused, clean_server_path, normalize_local
from transfers.farm import UnsupportedAccount
from transfers.kinds.options import KBps, LocalPath, Port, ServerPath, TaskId
from transfers.models import FarmAccount, Manifest, TransferJob
from transfers.transfer_tasks.status import INVALID, NO_PERMISSION, NOT_FOUND, RESPONSE, STATES

MAX_PATH_FILES = 100_000  # an upload of a folder walks it in the request: larger ones go through a manifest
MAX_LIST_BYTES = 32 * 1024 * 1024  # an upload-list's file is read in the request: larger ones are imported by a worker


StartAnswer = TypedDict("StartAnswer", {"code": int, "message": str, "task-id": int | None})


@dataclass(frozen=True)
class TransferTaskResult:
    """What start_transfer answers: a code of the table (transfers.transfer_tasks), why in words, and the job's id once made."""

    code: int
    message: str
    task_id: int | None = None
    state: str | None = None  # the task's Raysync state when there is a task

    def as_sdk(self) -> StartAnswer:
        return {"code": self.code, "message": self.message, "task-id": self.task_id}


BidId = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
Host = Annotated[str, msgspec.Meta(max_length=253)]


class StartArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """start_transfer's parameters by the SDK's names, checked once (the function and the API share it)."""

    task_type: Literal["upload", "upload-list", "download"]
    local_path: LocalPath
    server_path: ServerPath | None = None
    file_type: Literal["normal", "json"] = "normal"
    task_id: TaskId | None = None
    trans_storage: Literal["output", "input"] = "output"
    max_speed: KBps | None = None
    network_mode: Literal[0, 1, 2] = 0
    server_ip: Host | None = None
    server_port: Port | None = None
    upload_num: Annotated[int, msgspec.Meta(ge=1, le=10)] = 2
    download_num: Annotated[int, msgspec.Meta(ge=1, le=10)] = 2
    enable_hash: bool = False
    max_timeout: Annotated[float, msgspec.Meta(ge=0, le=10**7)] | None = None
    wait: bool = False
    storage_id: BidId | None = None
    input_id: BidId | None = None
    user_id: BidId | None = None
    proxy_ip: Host | None = None
    proxy_port: Port | None = None


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


_Made = tuple[Manifest | None, dict[str, Any]]  # a start's manifest (uploads) and its job's options


@dataclass(frozen=True)
class _Start:
    """One (task_type, file_type): the role it needs, the job kind, and how its job's pieces are made."""

    action: Literal["run", "manage"]
    kind: str
    make: Callable[[FarmAccount, StartArgs, Any, HttpRequest | None], _Made]


def _line_options(args: StartArgs) -> dict[str, Any]:
    """The options every kind takes, only those given (the account's defaults fill the rest)."""
    given = {"max_speed": args.max_speed, "server_ip": args.server_ip, "server_port": args.server_port}
    return {key: value for key, value in given.items() if value is not None} | {"network_mode": args.network_mode}


def _upload_path(account: FarmAccount, args: StartArgs, user: Any, request: HttpRequest | None) -> _Made:
    """upload, file_type normal: a file or a folder becomes a manifest of its files (services.manifest_import)."""
    try:
        entries = expand_upload_list(
            [(1, args.local_path)], allowed_roots=list(settings.ALLOWED_LOCAL_ROOTS), path_map=PathMap(account.path_map)
        )
    except (ManifestInvalid, PathRefused) as exc:
        raise _Refused(INVALID, f"local_path: {_problems(exc)}") from None
    if len(entries) > MAX_PATH_FILES:
        raise _Refused(
            INVALID,
            f"local_path: {len(entries)} files, more than one start takes ({MAX_PATH_FILES}); build a manifest of the "
            "folder (POST /api/manifests/append/) and upload it with upload_asset",
        )
    if args.server_path and args.server_path.strip("/\\"):
        folder = _clean(args.server_path, "server_path")
        base = normalize_local(args.local_path).rstrip("/")
        name = base.rsplit("/", 1)[-1]
        entries = [
            ManifestEntry(entry.local, "/" + "/".join(p for p in (folder, name, _below(entry.local, args.local_path, base)) if p))
            for entry in entries
        ]
    data = encode_upload_json(entries)
    return _imported(account, args, user, request, data, Manifest.TransmitType.UPLOAD_JSON), _line_options(args)


def _below(local: str, given: str, base: str) -> str:
    """A folder's file relative to the folder ("" for the file that was given itself)."""
    return "" if local == given else local[len(base) :].lstrip("/")


def _upload_list(account: FarmAccount, args: StartArgs, user: Any, request: HttpRequest | None) -> _Made:
    """upload-list: local_path is an upload.json or an upload list; its files go where it says."""
    path = PathMap(account.path_map).apply(args.local_path)
    try:
        with LocalTree(settings.ALLOWED_LOCAL_ROOTS) as tree:
            fd, info = tree.open_file(path)
    except NotAFile:
        raise _Refused(INVALID, f"local_path: {args.local_path!r} is a folder: name the upload.json or upload list") from None
    except FileNotFoundError:
        raise _Refused(INVALID, f"local_path: {args.local_path!r} does not exist") from None
    except (OSError, PathRefused) as exc:
        raise _Refused(INVALID, f"local_path: {exc}") from None
    with open(fd, "rb") as handle:
        if info.st_size > MAX_LIST_BYTES:
            raise _Refused(
                INVALID,
                f"local_path: {info.st_size} bytes, more than one start reads ({MAX_LIST_BYTES}); import it "
                "(POST /api/manifests/ with server_path) and upload it with upload_asset",
            )
        data = handle.read(MAX_LIST_BYTES + 1)
    # The SDK's upload-list takes an upload.json; an upload list (a path per line) is taken too.
    transmit = (
        Manifest.TransmitType.UPLOAD_JSON
        if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"
        else Manifest.TransmitType.UPLOAD_LIST
    )
    return _imported(account, args, user, request, data, transmit), _line_options(args)


def _upload_config(account: FarmAccount, args: StartArgs, user: Any, request: HttpRequest | None) -> _Made:
    """upload, file_type json: one of a render task's configuration files into /<task_id>/cfg/."""
    if args.task_id is None:
        raise _Refused(INVALID, "task_id: a json upload goes to the render task's /<task_id>/cfg/: give the task's id")
    return None, {"task_id": args.task_id, "config_file_list": [args.local_path], **_line_options(args)}


def _download(account: FarmAccount, args: StartArgs, user: Any, request: HttpRequest | None) -> _Made:
    """download: server_path (in the output area) into the local folder local_path."""
    if args.trans_storage != "output":
        raise _Refused(INVALID, "trans_storage: rvweb downloads from the output storage only; 'input' is not available")
    if not args.server_path or not args.server_path.strip("/\\"):
        raise _Refused(INVALID, "server_path: name the folder or file of the output storage to download")
    return None, {"server_path": args.server_path, "local_path": args.local_path, **_line_options(args)}


STARTS: dict[tuple[str, str], _Start] = {
    ("upload", "normal"): _Start("manage", TransferJob.Kind.UPLOAD_ASSET, _upload_path),
    ("upload", "json"): _Start("run", TransferJob.Kind.UPLOAD_CONFIG, _upload_config),
    ("upload-list", "normal"): _Start("manage", TransferJob.Kind.UPLOAD_ASSET, _upload_list),
    ("download", "normal"): _Start("run", TransferJob.Kind.DOWNLOAD, _download),
}


def _imported(
    account: FarmAccount, args: StartArgs, user: Any, request: HttpRequest | None, data: bytes, transmit: str
) -> Manifest:
    name = f"start_transfer {args.task_type}: {args.local_path}"[:200]
    try:
        return services.manifest_import(name=name, account=account, data=data, user=user, request=request, transmit_type=transmit)
    except ManifestInvalid as exc:
        raise _Refused(INVALID, f"local_path: {_problems(exc)}") from None


def _problems(exc: Exception) -> str:
    problems = getattr(exc, "problems", None)
    if not problems:
        return str(exc)
    shown = "; ".join(problem.reason for problem in problems[:5])
    return shown + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")


def _clean(path: str, name: str) -> str:
    try:
        return clean_server_path(path)
    except PathRefused as exc:
        raise _Refused(INVALID, f"{name}: {exc}") from None


def _parse(raw: dict[str, Any]) -> StartArgs:
    try:
        return msgspec.convert(raw, type=StartArgs, strict=False)
    except msgspec.ValidationError as exc:
        text, _, where = str(exc).partition(" - at `$.")
        raise _Refused(INVALID, f"{where.rstrip('`')}: {text}" if where else text.replace("`$.", "`")) from None


def _account(user: Any, account: FarmAccount | int | str | None) -> FarmAccount:
    """The account as the user sees it (selectors): another team's and a missing one answer alike."""
    account_id = account.pk if isinstance(account, FarmAccount) else account
    if isinstance(account_id, str) and account_id.isascii() and account_id.isdigit() and len(account_id) < 19:
        account_id = int(account_id)  # a form post's value
    if isinstance(account_id, bool) or not isinstance(account_id, int) or not 0 < account_id < 2**63:
        raise _Refused(INVALID, "account: the id of a farm account")
    found = selectors.accounts_for(user).filter(pk=account_id).first()
    if found is None:
        raise _Refused(NOT_FOUND, f"no farm account {account_id} that you may see")
    return found


def start_transfer_from(*, user: Any, body: dict[str, Any], request: HttpRequest | None = None) -> TransferTaskResult:
    """start_transfer with its arguments as JSON (the API's body): `account` plus the SDK's names."""
    if not isinstance(body, dict):
        return TransferTaskResult(INVALID, 'send an object: {"account": id, "task_type": ..., "local_path": ...}')
    fields = dict(body)
    account = fields.pop("account", None)
    try:
        return _start(user=user, account=_account(user, account), args=_parse(fields), request=request)
    except _Refused as refused:
        return TransferTaskResult(refused.code, refused.message)


def start_transfer(
    *,
    user: Any,
    account: FarmAccount | int,
    task_type: str,
    local_path: str,
    server_path: str | None = None,
    file_type: str = "normal",
    task_id: int | None = None,
    trans_storage: str = "output",
    max_speed: int | None = None,
    network_mode: int = 0,
    server_ip: str | None = None,
    server_port: int | str | None = None,
    upload_num: int = 2,
    download_num: int = 2,
    enable_hash: bool = False,
    max_timeout: float | None = None,
    wait: bool = False,
    storage_id: int | str | None = None,
    input_id: int | str | None = None,
    user_id: int | str | None = None,
    proxy_ip: str | None = None,
    proxy_port: int | str | None = None,
    request: HttpRequest | None = None,
    poll_interval: float = 1.0,
) -> TransferTaskResult:
    """Start a transfer task (a new TransferJob of `account`, made through jobs.job_create) as `user`.

    task_type / file_type, and what the task is:
      upload, normal   `local_path` (a file, or a folder with every file below it) into the input storage:
                       into `server_path` (a folder; the file or folder keeps its name there), or, without
                       one, where the SDK's rule puts it (`D:\\a\\b.ma` -> `/D/a/b.ma`). It becomes a manifest
                       (services.manifest_import: the lead role) and an upload_asset job. At most
                       MAX_PATH_FILES files.
      upload, json     `local_path`, a render task's configuration file, into `/<task_id>/cfg/` of the
                       config storage: an upload_config job. `task_id` is required; server_path is not used.
      upload-list      `local_path` is an upload.json (or an upload list, a path per line): imported as a
                       manifest (the lead role), then an upload_asset job. At most MAX_LIST_BYTES.
      download         `server_path` (a folder or file of the output storage) into the local folder
                       `local_path`: a download job (`trans_storage` "input" is refused: not available).
    Every local path must lie under the allowed roots (account path mapping applied).

    The other SDK parameters: max_speed (KB/s), network_mode (0 auto, 1 TCP, 2 UDP), server_ip and
    server_port (the line) become the job's options. enable_hash: rvweb always verifies every file
    (xxh3-128), so it is taken and changes nothing. upload_num / download_num (1-10, as the SDK checks them)
    are Raysync's limits of concurrent tasks in its one shared client; rvweb has none (each job has its
    worker, and `pool_size` in the account's default options): checked, not used. storage_id, input_id,
    user_id (the storage bids and user id Raysync's paths are built from): the account's storage areas
    decide here; checked (whole numbers), not used. proxy_ip / proxy_port (Raysync's proxy manager): rvweb
    relays nothing through a proxy, and sending directly when a proxy was asked for could break a
    network's rules, so a proxy_ip is refused (400). task_id is used by json uploads only: it never makes a
    start restart an older failed task (the SDK's bug #5); retry a job with services.job_retry.

    wait=False answers code 0 and the new job's id once it is recorded and enqueued. wait=True polls the
    job's row every `poll_interval` seconds until it ends (0 completed, 500 failed or completed with
    errors), is paused or cancelled by someone (102), or `max_timeout` seconds have passed (None: no
    bound); then it answers the job's current code (100 queued, 101 running) and says the transfer goes
    on. The job is never stopped by the wait. Waiting is refused inside a transaction (the job is
    enqueued when it commits). A refusal answers a code of the module's table (400, 404,
    405) with the reason; nothing is recorded then.
    """
    raw = {
        "task_type": task_type,
        "local_path": local_path,
        "server_path": server_path,
        "file_type": file_type,
        "task_id": task_id,
        "trans_storage": trans_storage,
        "max_speed": max_speed,
        "network_mode": network_mode,
        "server_ip": server_ip,
        "server_port": server_port,
        "upload_num": upload_num,
        "download_num": download_num,
        "enable_hash": enable_hash,
        "max_timeout": max_timeout,
        "wait": wait,
        "storage_id": storage_id,
        "input_id": input_id,
        "user_id": user_id,
        "proxy_ip": proxy_ip,
        "proxy_port": proxy_port,
    }
    try:
        return _start(user=user, account=_account(user, account), args=_parse(raw), request=request, poll_interval=poll_interval)
    except _Refused as refused:
        return TransferTaskResult(refused.code, refused.message)


def _start(
    *, user: Any, account: FarmAccount, args: StartArgs, request: HttpRequest | None, poll_interval: float = 1.0
) -> TransferTaskResult:
    from transfers.jobs import job_create

    if args.proxy_ip:
        raise _Refused(INVALID, "proxy_ip: rvweb sends through no Raysync proxy manager; leave it empty")
    if args.wait and transaction.get_connection().in_atomic_block:
        # The job is enqueued when the caller's transaction commits: waiting inside it would wait for ever.
        raise _Refused(INVALID, "wait: call start_transfer outside a transaction to wait (the job starts on commit)")
    start = STARTS.get((args.task_type, args.file_type))
    if start is None:
        raise _Refused(INVALID, f"file_type: {args.file_type!r} goes with task_type 'upload' only")
    if not selectors.user_may(user, start.action, account):
        needs = "the lead role (it imports a manifest)" if start.action == "manage" else "the member or lead role"
        raise _Refused(NO_PERMISSION, f"{args.task_type} on farm account {account.name!r} needs {needs} in its team")
    job_kind = kinds.get(start.kind)
    manifest: Manifest | None = None
    try:
        if job_kind.uses_manifest:  # its options are checked before a manifest is made for it
            job_kind.parse({**options_for(account, job_kind.Options), **_line_options(args)})
        manifest, options = start.make(account, args, user, request)
        job = job_create(kind=start.kind, account=account, manifest=manifest, user=user, options=options, request=request)
    except PermissionDenied as exc:
        _forget(manifest)
        raise _Refused(NO_PERMISSION, str(exc)) from None
    except (kinds.OptionsInvalid, kinds.UnknownKind, UnsupportedAccount, services.ManifestNotReady) as exc:
        _forget(manifest)
        raise _Refused(INVALID, str(exc)) from None
    except _Refused:
        _forget(manifest)
        raise
    if not args.wait:
        return TransferTaskResult(RESPONSE["successful"], f"started: transfer task {job.pk}", job.pk, STATES[job.status].state)
    return _wait(user=user, job_id=job.pk, max_timeout=args.max_timeout, poll_interval=poll_interval)


def _forget(manifest: Manifest | None) -> None:
    """A manifest made for a start that was then refused goes too: nobody asked for it on its own."""
    if manifest is not None:
        manifest_store.entries_delete(manifest_id=manifest.pk)
        manifest.delete()


def _wait(*, user: Any, job_id: int, max_timeout: float | None, poll_interval: float) -> TransferTaskResult:
    """Read the job's row until it no longer goes on by itself, or until the bound; never stop it."""
    deadline = None if max_timeout is None else time.monotonic() + max_timeout
    while True:
        status = selectors.jobs_for(user).filter(pk=job_id).values_list("status", flat=True).first()
        if status is None:
            return TransferTaskResult(NOT_FOUND, f"transfer task {job_id} is no longer one you may see", job_id)
        found = STATES[status]
        if not found.going_on:
            return TransferTaskResult(found.code, f"transfer task {job_id} is {status}", job_id, found.state)
        if deadline is not None and time.monotonic() >= deadline:
            return TransferTaskResult(
                found.code,
                f"transfer task {job_id} is still {status} after {max_timeout:g} s; it goes on: follow it with "
                "get_task_status, or cancel it",
                job_id,
                found.state,
            )
        time.sleep(poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - time.monotonic())))
