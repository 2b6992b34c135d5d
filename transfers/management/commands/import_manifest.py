from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from transfers import services
from transfers.engine.manifest import ManifestInvalid
from transfers.models import FarmAccount


class Command(BaseCommand):
    help = "Import an upload.json (transmit_type upload_json) as a manifest of a farm account."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("upload_json", type=Path)
        parser.add_argument("--account", required=True, help="farm account name")
        parser.add_argument("--name", help="manifest name (default: the file name)")
        parser.add_argument("--transmit-type", choices=["upload_json", "upload_list"], default="upload_json")

    def handle(
        self, *args: object, upload_json: Path, account: str, name: str | None, transmit_type: str, **options: object
    ) -> None:
        try:
            farm_account = FarmAccount.objects.get(name=account)
        except FarmAccount.DoesNotExist:
            raise CommandError(f"no farm account named {account!r}") from None
        try:
            data = upload_json.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {upload_json}: {exc.strerror}") from None
        try:
            manifest = services.manifest_import(
                name=name or upload_json.name, account=farm_account, data=data, user=None, transmit_type=transmit_type
            )
        except ManifestInvalid as exc:
            raise CommandError(f"{upload_json} refused: {exc}") from None
        self.stdout.write(f"manifest {manifest.pk}: {manifest.entry_count} entries, {manifest.total_bytes} bytes")
