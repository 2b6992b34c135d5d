"""upload_asset: every file a manifest lists, into the farm account's input area (the SDK's upload_asset)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfers.kinds import register
from transfers.kinds.base import JobKind, KeepGoing, Leg, Totals
from transfers.kinds.options import UploadAsset

if TYPE_CHECKING:
    from pathlib import Path

    from transfers.models import FarmAccount, Manifest, TransferJob


@register
class UploadAssetKind(JobKind[UploadAsset]):
    name = "upload_asset"
    label = "Upload assets"
    Options = UploadAsset

    uses_manifest = True

    def plan(self, *, account: FarmAccount, manifest: Manifest | None, options: UploadAsset, roots: list[Path]) -> Totals:
        assert manifest is not None
        return Totals(files=manifest.entry_count, bytes=manifest.total_bytes)

    def describe(self, options: UploadAsset, *, account: str) -> str:
        return f'the manifest\'s files into the input storage of farm account "{account}"'

    def legs(self, options: UploadAsset) -> list[Leg]:
        return [Leg("input", ledger=options.is_db)]

    def prepare(self, job: TransferJob, options: UploadAsset, keep_going: KeepGoing) -> bool:
        from transfers.services import job_prepare

        return job_prepare(job_id=job.pk, keep_going=keep_going)
