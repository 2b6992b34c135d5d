"""upload_config and upload: a render task's configuration files into `/<task_id>/cfg/` of the config
area (the SDK's upload_config); `upload` sends them first, then the manifest's assets, in one job.

Unlike the SDK, a configuration file that is missing fails its item with that reason (the SDK skips it
with an info line and reports success), and nothing is retried back-to-back (§8 #1).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from transfers.engine.paths import PathMap, PathRefused, local_source
from transfers.kinds import register
from transfers.kinds.base import JobKind, KeepGoing, Leg, Totals
from transfers.kinds.options import OptionsInvalid, Upload, UploadConfig

if TYPE_CHECKING:
    from pathlib import Path

    from transfers.models import FarmAccount, Manifest, TransferJob


def config_server_path(task_id: int, local: str) -> str:
    """`/<task_id>/cfg/<file name>`, the file name taken from a Windows or a POSIX path."""
    name = re.split(r"[\\/]", local.rstrip("\\/"))[-1]
    return f"/{task_id}/cfg/{name}"


def _check_config_files(account: FarmAccount, files: list[str], roots: list[Path]) -> Totals:
    """Every file under an allowed root and there now (the SDK skips a missing one and says it worked)."""
    path_map = PathMap(account.path_map)
    size = 0
    for number, local in enumerate(files):
        try:
            real = local_source(path_map.apply(local), roots)
            size += real.stat().st_size
        except PathRefused as exc:
            raise OptionsInvalid(f"config_file_list[{number}]: {exc}") from None
        except OSError as exc:
            raise OptionsInvalid(f"config_file_list[{number}]: {local!r} cannot be read ({exc.strerror})") from None
    return Totals(files=len(files), bytes=size)


def _make_config_items(job: TransferJob, task_id: int, files: list[str]) -> None:
    from transfers.models import TransferItem

    items = [
        TransferItem(job=job, number=number, local=local, server=config_server_path(task_id, local), area="config")
        for number, local in enumerate(files, start=1)
    ]
    # Idempotent: a second prepare (a redelivered task) meets the (job, number) constraint and adds nothing.
    TransferItem.objects.bulk_create(items, ignore_conflicts=True)


@register
class UploadConfigKind(JobKind[UploadConfig]):
    name = "upload_config"
    label = "Upload task configuration"
    Options = UploadConfig

    def plan(self, *, account: FarmAccount, manifest: Manifest | None, options: UploadConfig, roots: list[Path]) -> Totals:
        return _check_config_files(account, options.config_file_list, roots)

    def describe(self, options: UploadConfig, *, account: str) -> str:
        count = len(options.config_file_list)
        return f'{count} configuration files into /{options.task_id}/cfg/ of the config storage of farm account "{account}"'

    def legs(self, options: UploadConfig) -> list[Leg]:
        return [Leg("config")]

    def prepare(self, job: TransferJob, options: UploadConfig, keep_going: KeepGoing) -> bool:
        from transfers.services import job_prepare

        _make_config_items(job, options.task_id, options.config_file_list)
        return job_prepare(job_id=job.pk, keep_going=keep_going)  # no manifest: sets failed items pending on a retry


@register
class UploadKind(JobKind[Upload]):
    name = "upload"
    label = "Upload configuration and assets"
    Options = Upload

    uses_manifest = True

    def plan(self, *, account: FarmAccount, manifest: Manifest | None, options: Upload, roots: list[Path]) -> Totals:
        assert manifest is not None
        config = _check_config_files(account, options.config_file_list, roots)
        return Totals(files=config.files + manifest.entry_count, bytes=config.bytes + manifest.total_bytes)

    def describe(self, options: Upload, *, account: str) -> str:
        return (
            f"{len(options.config_file_list)} configuration files into /{options.task_id}/cfg/, then the manifest's files "
            f'into the input storage of farm account "{account}"'
        )

    def legs(self, options: Upload) -> list[Leg]:
        return [Leg("config"), Leg("input", ledger=options.is_db)]

    def prepare(self, job: TransferJob, options: Upload, keep_going: KeepGoing) -> bool:
        from transfers.services import job_prepare

        files = options.config_file_list
        _make_config_items(job, options.task_id, files)
        return job_prepare(job_id=job.pk, keep_going=keep_going, first_number=len(files) + 1)
