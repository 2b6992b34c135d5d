"""The options of each job kind, with the SDK's names and units: one typed object per kind, validated once.

A job's options are checked when it is created (`parse`) and stored as JSON; whoever reads them later
gets the same typed object back (`load`) with every default filled in, so nobody calls `.get()` with a
default of their own. A bad value is refused with the option's name and what it must be.

Plain Python and msgspec: the pages, the API, the management commands and the worker all use these.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec

KBps = Annotated[int, msgspec.Meta(ge=1, le=10_485_760, description="KB/s, as in the SDK")]
Port = Annotated[int, msgspec.Meta(ge=1, le=65_535)]
TaskId = Annotated[int, msgspec.Meta(ge=1, le=2**53)]
# No NUL: no file name holds one, and the path functions raise ValueError on it (a 500, a traceback).
LocalPath = Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern="^[^\x00]*$")]
ServerPath = Annotated[str, msgspec.Meta(max_length=4096)]  # a path in a farm storage area


class OptionsInvalid(ValueError):
    """Options a job cannot run with; the message names the option."""


class Transfer(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What every transfer takes: speed, parallelism, attempts and the line (the SDK's names)."""

    max_speed: KBps | None = None  # None: no limit
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4  # files at once
    upload_num: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3  # attempts per file (the SDK's upload_num/download_num)
    engine_type: Annotated[str, msgspec.Meta(max_length=64)] | None = None  # a transport name; None: the account's own
    server_ip: Annotated[str, msgspec.Meta(max_length=253)] | None = None  # a host name at most
    server_port: Port | None = None
    network_mode: Literal[0, 1, 2] = 0  # 0 automatic, 1 TCP, 2 UDP (the SDK's own reading, §5.4)

    @property
    def attempts(self) -> int:
        return self.upload_num


class UploadAsset(Transfer, frozen=True, kw_only=True):
    """upload_asset: the files a manifest lists, into the account's input area."""

    is_db: bool = True  # skip files unchanged since their last upload


class UploadConfig(Transfer, frozen=True, kw_only=True):
    """upload_config: a render task's configuration files into `/<task_id>/cfg/` of the config area."""

    task_id: TaskId
    config_file_list: Annotated[list[LocalPath], msgspec.Meta(min_length=1, max_length=64)]


class Upload(UploadAsset, frozen=True, kw_only=True):
    """upload: the task's configuration files, then the manifest's assets, as one job."""

    task_id: TaskId
    task_json_path: LocalPath
    tips_json_path: LocalPath | None = None
    asset_json_path: LocalPath | None = None
    upload_json_path: LocalPath | None = None

    @property
    def config_file_list(self) -> list[str]:
        paths = (self.task_json_path, self.tips_json_path, self.asset_json_path, self.upload_json_path)
        return [path for path in paths if path]


Conflict = Literal["skip_identical", "overwrite", "keep_both"]


class Download(Transfer, frozen=True, kw_only=True):
    """download: the outputs of render tasks (or of server paths) into a local folder, once."""

    task_id_list: Annotated[list[TaskId], msgspec.Meta(max_length=1000)] = []
    # A path or paths relative to the output area; when given, task ids only name the watcher's tasks.
    server_path: ServerPath | Annotated[list[ServerPath], msgspec.Meta(max_length=1000)] | None = None
    local_path: LocalPath | None = None  # None: the SDK's ~/renderfarm_sdk, under the allowed roots
    # "true": <task_id>_<scene>/... as on the farm; "false": the folder's contents straight into local_path.
    download_filename_format: Literal["true", "false"] = "true"
    conflict: Conflict = "skip_identical"  # a local file of that name that is not the frame

    def __post_init__(self) -> None:
        if not self.task_id_list and not self.server_path:
            raise ValueError("give task_id_list or server_path: nothing to download otherwise")

    @property
    def server_paths(self) -> list[str]:
        if self.server_path is None:
            return []
        return [self.server_path] if isinstance(self.server_path, str) else list(self.server_path)


class AutoDownload(Download, frozen=True, kw_only=True):
    """auto_download: each frame as soon as it is complete, until every task has ended."""

    sleep_time: Annotated[float, msgspec.Meta(ge=0.2, le=3600)] = 10.0  # seconds between polls
    is_test_stop: bool = False  # a task waiting at "test done" (40) counts as ended

    def __post_init__(self) -> None:
        if not self.task_id_list:
            raise ValueError("task_id_list: an auto download follows render tasks; give at least one")


class AutoDownloadAfterTaskCompleted(AutoDownload, frozen=True, kw_only=True):
    """auto_download_after_task_completed: each task's outputs once the task has ended."""


OptionsT = TypeVar("OptionsT", bound=Transfer)


def parse(kind: type[OptionsT], raw: dict[str, Any] | None) -> OptionsT:
    """Check `raw` (JSON from a form, the API, a command) against the kind's options; OptionsInvalid
    names the option and what it must be."""
    try:
        return msgspec.convert(raw or {}, type=kind, strict=False)
    except msgspec.ValidationError as exc:
        raise OptionsInvalid(_say(str(exc))) from None


def dump(options: Transfer) -> dict[str, Any]:
    """The JSON stored with the job: every option, defaults included, so a later default change does not
    change what a job was started with."""
    result = msgspec.to_builtins(options)
    assert isinstance(result, dict)
    return result


def load(kind: type[OptionsT], stored: dict[str, Any]) -> OptionsT:
    """A stored job's options. They were checked when the job was made; an old job's JSON that no
    longer fits is an OptionsInvalid for the job's error, never a crash."""
    return parse(kind, stored)


def _say(message: str) -> str:
    # msgspec says "Expected `int` >= 1 - at `$.pool_size`"; users read "pool_size: expected `int` >= 1".
    text, _, where = message.partition(" - at `$.")
    if where:
        return f"{where.rstrip('`')}: {text[0].lower()}{text[1:]}"
    return message.replace("Object contains unknown field", "unknown option").replace("`$.", "`")
