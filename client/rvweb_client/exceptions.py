"""Errors, named as the SDK names them, each saying what went wrong and, for a transfer, which files."""

from __future__ import annotations

from typing import Any


class RayvisionError(Exception):
    """Any refusal or failure; `error_code` is rvweb's HTTP status (0 when no answer came)."""

    def __init__(self, error_code: int, error: str, *args: Any) -> None:
        super().__init__(error, *args)
        self.error_code = error_code
        self.error = error

    def __str__(self) -> str:
        return self.error if not self.error_code else f"{self.error} (HTTP {self.error_code})"


class TransferFailed(RayvisionError):
    """A job ended without every file: `job` (or `group`) is rvweb's record of it, `failures` the files
    that failed, each {"local", "server", "error"} (the first 1000 of each job)."""

    def __init__(self, error: str, *, failures: list[dict[str, Any]], job: dict[str, Any] | None = None,
                 group: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__(0, error)
        self.failures = failures
        self.job = job
        self.group = group


class UploadFailed(TransferFailed):
    """An upload (upload_asset, upload_config, upload, thread_pool_upload) did not send every file."""


class DownloadFailed(TransferFailed):
    """A download (download, auto_download, auto_download_after_task_completed) did not bring every file."""
