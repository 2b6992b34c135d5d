"""RayvisionUpload: the SDK's upload calls, each a job on rvweb that this waits for.

Each returns True once every file arrived, and raises UploadFailed naming the files that did not
(the SDK's "False on failure" never happens, and its thread pool loses its workers' errors: §8 #3, #24).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from rvweb_client.api import RayvisionAPI
from rvweb_client.exceptions import RayvisionError, UploadFailed

# The SDK's transfer engines: rvweb moves the bytes itself, so these name no rvweb transport.
SDK_ENGINES = frozenset({"aspera", "raysync", "raysyncproxy", "raysyncweb"})
_GROUP_ACTIVE = frozenset({"queued", "running", "paused"})


def transfer_options(
    max_speed: str | int | None = None,
    *,
    engine_type: str | None = None,
    server_ip: str | None = None,
    server_port: str | int | None = None,
    network_mode: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The options rvweb takes, by the SDK's names; what is None is left to rvweb's defaults."""
    options: dict[str, Any] = {key: value for key, value in extra.items() if value is not None}
    if max_speed is not None:
        options["max_speed"] = _whole("max_speed", max_speed)
    if engine_type is not None and engine_type not in SDK_ENGINES:
        options["engine_type"] = engine_type
    if server_ip:
        options["server_ip"] = server_ip
    if server_port is not None:
        options["server_port"] = _whole("server_port", server_port)
    if network_mode:
        options["network_mode"] = int(network_mode)
    return options


def _whole(name: str, value: str | int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: a whole number, got {value!r}") from None


def failure_report(what: str, job: dict[str, Any], failures: list[dict[str, Any]]) -> str:
    """`upload_asset job 7 ended completed_with_errors: 2 of 20 files failed: /a.bin (local file not found ...)`."""
    head = f"{what} job {job['id']} ended {job['status']}"
    if job.get("error"):
        head += f" ({job['error']})"
    if job.get("files_failed"):
        head += f": {job['files_failed']} of {job['files_total']} files failed"
    shown = "; ".join(f"{f.get('local') or f.get('server')} ({f.get('error')})" for f in failures[:10])
    more = f"; and {len(failures) - 10} more" if len(failures) > 10 else ""
    return head + (f": {shown}{more}" if shown else "")


class RayvisionUpload:
    """The SDK's RayvisionUpload over rvweb. The SDK's other constructor arguments (transmitter,
    line table, db_config) are accepted and have no use here: rvweb chooses the line and keeps the
    upload ledger (is_db) on the server, per farm account, across manifests."""

    def __init__(
        self,
        api: RayvisionAPI,
        db_config_path: str | None = None,
        transports_json: str = "",
        transmitter_exe: str = "",
        automatic_line: bool = True,
        internet_provider: str = "",
        logger: logging.Logger | None = None,
        log_folder: str | None = None,
        log_name: str | None = None,
        log_level: str = "DEBUG",
    ) -> None:
        self.api = api
        self.logger = logger or api.logger

    def _run(self, what: str, job: dict[str, Any], print_log: bool = False) -> bool:
        self.logger.info("%s: rvweb job %s (%s/jobs/%s/)", what, job["id"], self.api.url, job["id"])
        job = self.api.wait_job(int(job["id"]), print_log=print_log)
        if job["status"] == "completed":
            return True
        failures = self.api.job_failures(int(job["id"]))
        raise UploadFailed(failure_report(what, job, failures), failures=failures, job=job)

    def upload_asset(
        self,
        upload_json_path: str,
        max_speed: str | int | None = None,
        is_db: bool = True,
        engine_type: str = "aspera",
        server_ip: str | None = None,
        server_port: str | int | None = None,
        transmit_type: str = "upload_json",
        network_mode: int = 0,
        redis_flag: str | None = None,
        is_record: bool = False,
        redis_obj: Any = None,
        proxy_ip: str | None = None,
        proxy_port: str | None = None,
        upload_num: int | None = None,
    ) -> bool:
        """Send the manifest to rvweb, upload every file it lists into the input storage, wait; True.

        `is_db`: skip files unchanged since their last upload (rvweb's ledger). `upload_num`: attempts
        per file (1 to 10). Raises UploadFailed with the failed files, RayvisionError when refused."""
        manifest = self.api.import_manifest(upload_json_path, transmit_type=transmit_type)
        options = transfer_options(
            max_speed, engine_type=engine_type, server_ip=server_ip, server_port=server_port, network_mode=network_mode,
            is_db=bool(is_db), upload_num=upload_num,
        )  # fmt: skip
        job = self.api.post("/api/jobs/", {"kind": "upload_asset", "manifest": manifest["id"], "options": options})
        return self._run("upload_asset", job)

    def upload_config(
        self,
        task_id: str | int,
        config_file_list: str | Sequence[str],
        max_speed: str | int | None = None,
        engine_type: str = "aspera",
        server_ip: str | None = None,
        server_port: str | int | None = None,
        network_mode: int = 0,
        proxy_ip: str | None = None,
        proxy_port: str | None = None,
        upload_num: int | None = None,
    ) -> bool:
        """Upload a render task's configuration files into `/<task_id>/cfg/` of the config storage; True.

        A file that is missing is refused by name (the SDK skips it and says it worked)."""
        files = [config_file_list] if isinstance(config_file_list, str) else list(config_file_list)
        options = transfer_options(
            max_speed, engine_type=engine_type, server_ip=server_ip, server_port=server_port, network_mode=network_mode,
            task_id=_whole("task_id", task_id), config_file_list=files, upload_num=upload_num,
        )  # fmt: skip
        job = self.api.post(f"/api/accounts/{self.api.account_id}/upload_config/", options)
        return self._run("upload_config", job)

    def upload(
        self,
        task_id: str | int,
        task_json_path: str | None = None,
        tips_json_path: str | None = None,
        asset_json_path: str | None = None,
        upload_json_path: str | None = None,
        max_speed: str | int | None = None,
        transmit_type: str = "upload_json",
        engine_type: str = "aspera",
        server_ip: str | None = None,
        server_port: str | int | None = None,
        network_mode: int = 0,
        is_record: bool = False,
        redis_flag: str | None = None,
        redis_obj: Any = None,
        proxy_ip: str | None = None,
        proxy_port: str | None = None,
        upload_num: int | None = None,
    ) -> bool:
        """The configuration files first, then the assets upload.json lists, as one rvweb job; True."""
        if not task_json_path or not upload_json_path:
            raise ValueError("upload needs task_json_path and upload_json_path (the assets' manifest)")
        manifest = self.api.import_manifest(upload_json_path, transmit_type=transmit_type)
        options = transfer_options(
            max_speed, engine_type=engine_type, server_ip=server_ip, server_port=server_port, network_mode=network_mode,
            task_id=_whole("task_id", task_id), task_json_path=task_json_path, tips_json_path=tips_json_path,
            asset_json_path=asset_json_path, upload_json_path=upload_json_path, upload_num=upload_num,
        )  # fmt: skip
        job = self.api.post(f"/api/manifests/{manifest['id']}/upload/", options)
        return self._run("upload", job)

    def thread_pool_upload(self, upload_pool: Sequence[str], pool_size: int = 10, **kwargs: Any) -> bool:
        """Upload every manifest of `upload_pool` (cutting_upload's parts) as one rvweb job group, at most
        `pool_size` at once; True once every file arrived.

        `kwargs` are upload_asset's (max_speed, is_db, transmit_type, ...); unlike the SDK, is_db may be
        left out (default True: unchanged files are skipped) and a part that fails is never lost: this
        raises UploadFailed with the failed files of every part."""
        if isinstance(upload_pool, str) or not upload_pool:
            raise ValueError("upload_pool: a list of upload.json paths (cutting_upload returns one)")
        transmit_type = kwargs.pop("transmit_type", "upload_json")
        print_log = bool(kwargs.pop("print_log", False))
        for ignored in ("redis_flag", "is_record", "redis_obj", "proxy_ip", "proxy_port"):
            kwargs.pop(ignored, None)
        known = {"max_speed", "is_db", "engine_type", "server_ip", "server_port", "network_mode", "upload_num"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"thread_pool_upload got unexpected options: {', '.join(unknown)}")
        is_db = bool(kwargs.pop("is_db", True))
        options = transfer_options(kwargs.pop("max_speed", None), is_db=is_db, **kwargs)
        manifests = [self.api.import_manifest(path, transmit_type=transmit_type)["id"] for path in upload_pool]
        group = self.api.post("/api/groups/", {"manifests": manifests, "pool_size": pool_size, "options": options})
        self.logger.info("thread_pool_upload: rvweb group %s (%s/groups/%s/)", group["id"], self.api.url, group["id"])
        group = self.api.wait(f"/api/groups/{group['id']}/", print_log=print_log, ended=_group_ended)
        if group["status"] == "completed":
            return True
        failures: list[dict[str, Any]] = []
        reports = []
        for job in group["jobs"]:
            if job["status"] != "completed":
                failed = self.api.job_failures(int(job["id"]))
                failures.extend(failed)
                reports.append(failure_report("part", job, failed))
        message = f"thread_pool_upload group {group['id']} ended {group['status']}: " + " | ".join(reports)
        raise UploadFailed(message, failures=failures, group=group)


def _group_ended(group: dict[str, Any]) -> bool:
    if group.get("status") in _GROUP_ACTIVE:
        return False
    return bool(group.get("is_terminal", True))


__all__ = ["RayvisionError", "RayvisionUpload", "UploadFailed"]
