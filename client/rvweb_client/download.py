"""RayvisionDownload: the SDK's download calls, each a job on rvweb that this waits for.

rvweb's worker writes the frames into `local_path` on its own machine (under its allowed roots); each
call returns True once every file arrived and raises DownloadFailed naming the ones that did not.
Unlike the SDK (§8 #8, #10), an unknown task id is refused at once instead of looping forever, and the
caller's task_id_list is never changed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from rvweb_client.api import RayvisionAPI
from rvweb_client.exceptions import DownloadFailed, RayvisionError
from rvweb_client.upload import failure_report, transfer_options


def _task_ids(task_id_list: Sequence[int | str] | int | str | None) -> list[int]:
    if task_id_list is None:
        return []
    if isinstance(task_id_list, (int, str)):
        task_id_list = [task_id_list]
    try:
        return [int(task_id) for task_id in task_id_list]  # a copy: the caller's list stays as it was
    except (TypeError, ValueError):
        raise ValueError(f"task_id_list: render task ids (whole numbers), got {task_id_list!r}") from None


class RayvisionDownload:
    """The SDK's RayvisionDownload over rvweb (its transmitter and line arguments have no use here)."""

    def __init__(
        self,
        api: RayvisionAPI,
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

    def _start(self, kind: str, options: dict[str, Any], print_log: bool) -> bool:
        job = self.api.post(f"/api/accounts/{self.api.account_id}/{kind}/", options)
        self.logger.info("%s: rvweb job %s (%s/jobs/%s/)", kind, job["id"], self.api.url, job["id"])
        job = self.api.wait_job(int(job["id"]), print_log=print_log)
        if job["status"] == "completed":
            return True
        failures = self.api.job_failures(int(job["id"]))
        raise DownloadFailed(failure_report(kind, job, failures), failures=failures, job=job)

    @staticmethod
    def _options(task_id_list: Any, local_path: str | None, download_filename_format: Any, **rest: Any) -> dict[str, Any]:
        fmt = str(download_filename_format).lower()
        if fmt not in ("true", "false"):
            raise ValueError(f'download_filename_format: "true" or "false", got {download_filename_format!r}')
        return transfer_options(task_id_list=_task_ids(task_id_list), local_path=local_path, download_filename_format=fmt, **rest)

    def download(
        self,
        task_id_list: Sequence[int | str] | None = None,
        max_speed: str | int | None = None,
        print_log: bool = True,
        download_filename_format: str = "true",
        local_path: str | None = None,
        server_path: str | Sequence[str] | None = None,
        engine_type: str = "aspera",
        server_ip: str | None = None,
        server_port: str | int | None = None,
        network_mode: int = 0,
        proxy_ip: str | None = None,
        proxy_port: str | None = None,
        asset: bool = False,
        enable_hash: bool = False,
        download_num: int | None = None,
    ) -> bool:
        """What the tasks (or `server_path`, relative to the output storage) hold now, once; True.

        Every file is verified (rvweb hashes every download; `enable_hash` is always on)."""
        if asset:
            raise RayvisionError(0, "asset=True (downloading from the input storage) is not offered by rvweb")
        if server_path is not None and not isinstance(server_path, str):
            server_path = list(server_path)
        options = self._options(
            task_id_list, local_path, download_filename_format, server_path=server_path, max_speed=max_speed,
            engine_type=engine_type, server_ip=server_ip, server_port=server_port, network_mode=network_mode,
            pool_size=download_num,
        )  # fmt: skip
        return self._start("download", options, print_log)

    def auto_download(
        self,
        task_id_list: Sequence[int | str] | None = None,
        max_speed: str | int | None = None,
        print_log: bool = False,
        sleep_time: float = 10,
        download_filename_format: str = "true",
        local_path: str | None = None,
        engine_type: str = "aspera",
        server_ip: str | None = None,
        server_port: str | int | None = None,
        network_mode: int = 0,
        is_test_stop: bool = False,
        proxy_ip: str | None = None,
        proxy_port: str | None = None,
        enable_hash: bool = False,
        download_num: int | None = None,
    ) -> bool:
        """Each frame as soon as it is complete, until every task has ended; True."""
        options = self._options(
            task_id_list, local_path, download_filename_format, sleep_time=sleep_time, is_test_stop=bool(is_test_stop),
            max_speed=max_speed, engine_type=engine_type, server_ip=server_ip, server_port=server_port,
            network_mode=network_mode, pool_size=download_num,
        )  # fmt: skip
        return self._start("auto_download", options, print_log)

    def auto_download_after_task_completed(
        self,
        task_id_list: Sequence[int | str] | None = None,
        max_speed: str | int | None = None,
        print_log: bool = True,
        sleep_time: float = 10,
        download_filename_format: str = "true",
        local_path: str | None = None,
        engine_type: str = "aspera",
        server_ip: str | None = None,
        server_port: str | int | None = None,
        network_mode: int = 0,
        proxy_ip: str | None = None,
        proxy_port: str | None = None,
        enable_hash: bool = False,
        download_num: int | None = None,
    ) -> bool:
        """Each task's outputs once that task has ended (a failure of one does not abandon the others); True."""
        options = self._options(
            task_id_list, local_path, download_filename_format, sleep_time=sleep_time, max_speed=max_speed,
            engine_type=engine_type, server_ip=server_ip, server_port=server_port, network_mode=network_mode,
            pool_size=download_num,
        )  # fmt: skip
        return self._start("auto_download_after_task_completed", options, print_log)


__all__ = ["DownloadFailed", "RayvisionDownload"]
