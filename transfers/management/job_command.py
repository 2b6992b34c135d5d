"""The SDK's functions as commands: `manage.py download --account farm --task_id_list 101 102 --wait`.

Each kind's command is a module with `class Command(KindCommand): kind = "<name>"`. Its flags are the
kind's options (transfers.kinds.options), by the SDK's names, made from the options' fields; the values
are checked by the kind as the pages' and the API's are.
"""

from __future__ import annotations

import time
import typing
from typing import Any

import msgspec
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from transfers import kinds, services
from transfers.models import FarmAccount, Manifest, TransferJob


def _is_list(annotation: Any) -> bool:
    text = str(annotation)
    return "list[" in text


class KindCommand(BaseCommand):
    kind: str

    @property
    def help(self) -> str:  # type: ignore[override]
        job_kind = kinds.get(self.kind)
        return f"{job_kind.label} ({self.kind}); the flags are its options, by the SDK's names."

    def add_arguments(self, parser: CommandParser) -> None:
        job_kind = kinds.get(self.kind)
        parser.add_argument("--account", help="farm account name or id (not for a kind that sends a manifest)")
        if job_kind.uses_manifest:
            parser.add_argument("--manifest", type=int, required=True, help="manifest id")
        parser.add_argument("--wait", action="store_true", help="follow the job until it ends, printing its progress")
        hints = typing.get_type_hints(job_kind.Options, include_extras=True)
        for field in msgspec.structs.fields(job_kind.Options):
            plural = _is_list(hints[field.name])
            parser.add_argument(f"--{field.name}", nargs="+" if plural else None, default=None, metavar=field.name.upper())

    def handle(self, *args: object, **given: Any) -> None:
        job_kind = kinds.get(self.kind)
        fields = {field.name for field in msgspec.structs.fields(job_kind.Options)}
        options = {key: value for key, value in given.items() if key in fields and value is not None}
        manifest = self._manifest(given.get("manifest")) if job_kind.uses_manifest else None
        account = manifest.account if manifest is not None else self._account(given.get("account"))
        from transfers.jobs import job_create

        try:
            job = job_create(kind=self.kind, account=account, manifest=manifest, user=None, options=options)
        except (kinds.OptionsInvalid, services.UnsupportedAccount, services.ManifestNotReady, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"job {job.pk}: {self.kind} queued")
        if given.get("wait"):
            self._follow(job)

    def _account(self, name: str | None) -> FarmAccount:
        if not name:
            raise CommandError("give --account (a farm account name or id)")
        accounts = FarmAccount.objects.defer("access_key")
        found = accounts.filter(pk=int(name)).first() if name.isdigit() else None
        found = found or accounts.filter(name=name).first()
        if found is None:
            raise CommandError(f"no farm account {name!r}")
        return found

    def _manifest(self, pk: int | None) -> Manifest:
        found = Manifest.objects.select_related("account").defer("account__access_key").filter(pk=pk).first()
        if found is None:
            raise CommandError(f"no manifest {pk}")
        return found

    def _follow(self, job: TransferJob) -> None:
        shown = ""
        while True:
            job.refresh_from_db()
            line = f"{job.get_status_display()}: {job.files_done} of {job.files_total} files, {job.percent}%"
            if line != shown:
                self.stdout.write(line)
                shown = line
            if job.is_terminal:
                if job.error:
                    self.stdout.write(job.error)
                if job.status != TransferJob.Status.COMPLETED:
                    raise CommandError(f"job {job.pk} ended {job.status}")
                return
            time.sleep(1)
