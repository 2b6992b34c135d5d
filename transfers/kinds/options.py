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


def _help(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class OptionsInvalid(ValueError):
    """Options a job cannot run with; the message names the option."""


class Transfer(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What every transfer takes: speed, parallelism, attempts and the line (the SDK's names)."""

    # The descriptions are the help of the job form (transfers.job_form), which is generated from these.
    max_speed: Annotated[KBps | None, _help("KB/s, as in the SDK; empty: no limit")] = None
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=64, description="files at once")] = 4
    upload_num: Annotated[int, msgspec.Meta(ge=1, le=10, description="attempts per file (the SDK's upload_num/download_num)")] = 3
    engine_type: Annotated[
        Annotated[str, msgspec.Meta(max_length=64)] | None,
        _help("the vendor's transmitter engine for a Fox account: aspera (empty) or raysync (raysyncproxy is raysync)"),
    ] = None
    server_ip: Annotated[Annotated[str, msgspec.Meta(max_length=253)] | None, _help("a host name; empty: the account's")] = None
    server_port: Annotated[Port | None, _help("empty: the account's")] = None
    network_mode: Annotated[Literal[0, 1, 2], _help("0 automatic, 1 TCP, 2 UDP (the SDK's own reading, §5.4)")] = 0
    automatic_line: Annotated[
        bool, _help("take the transfer lines from the farm's transfer config; off: the account's own lines")
    ] = True
    internet_provider: Annotated[
        Annotated[str, msgspec.Meta(max_length=100)],
        _help("the line to use, by its name (e.g. HKCT); empty: the fastest line measured"),
    ] = ""

    @property
    def attempts(self) -> int:
        return self.upload_num


class UploadAsset(Transfer, frozen=True, kw_only=True):
    """upload_asset: the files a manifest lists, into the account's input area."""

    is_db: Annotated[bool, _help("skip files unchanged since their last upload")] = True


class UploadConfig(Transfer, frozen=True, kw_only=True):
    """upload_config: a render task's configuration files into `/<task_id>/cfg/` of the config area."""

    task_id: Annotated[TaskId, _help("the render task's id on the farm")]
    config_file_list: Annotated[list[LocalPath], msgspec.Meta(min_length=1, max_length=64, description="the task's json files")]


class Upload(UploadAsset, frozen=True, kw_only=True):
    """upload: the task's configuration files, then the manifest's assets, as one job."""

    task_id: Annotated[TaskId, _help("the render task's id on the farm")]
    task_json_path: Annotated[LocalPath, _help("the task's task.json")]
    tips_json_path: Annotated[LocalPath | None, _help("its tips.json, if any")] = None
    asset_json_path: Annotated[LocalPath | None, _help("its asset.json, if any")] = None
    upload_json_path: Annotated[LocalPath | None, _help("its upload.json, if any")] = None

    @property
    def config_file_list(self) -> list[str]:
        paths = (self.task_json_path, self.tips_json_path, self.asset_json_path, self.upload_json_path)
        return [path for path in paths if path]


Conflict = Literal["skip_identical", "overwrite", "keep_both"]


class Download(Transfer, frozen=True, kw_only=True):
    """download: the outputs of render tasks (or of server paths) into a local folder, once."""

    task_id_list: Annotated[
        list[TaskId], msgspec.Meta(max_length=1000, description="the render tasks whose outputs to take")
    ] = []
    # A path or paths relative to the output area; when given, task ids only name the watcher's tasks.
    server_path: Annotated[
        ServerPath | Annotated[list[ServerPath], msgspec.Meta(max_length=1000)] | None,
        _help("paths relative to the output area, instead of whole tasks"),
    ] = None
    local_path: Annotated[LocalPath | None, _help("a folder under an allowed root; empty: renderfarm_sdk, as the SDK")] = None
    # "true": <task_id>_<scene>/... as on the farm; "false": the folder's contents straight into local_path.
    download_filename_format: Annotated[
        Literal["true", "false"], _help("true: keep each task's <task_id>_<scene> folder; false: its contents straight in")
    ] = "true"
    conflict: Annotated[Conflict, _help("a local file of that name that is not the frame")] = "skip_identical"

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

    sleep_time: Annotated[float, msgspec.Meta(ge=0.2, le=3600, description="seconds between listings")] = 10.0
    is_test_stop: Annotated[bool, _help('a task waiting at "test done" (40) counts as ended')] = False

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
