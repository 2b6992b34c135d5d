from django.core.management.base import BaseCommand, CommandError, CommandParser

from transfers.engine.manifest import ManifestInvalid
from transfers.engine.sdk import append_to_upload


class Command(BaseCommand):
    help = "The SDK's append_to_upload: add files and folders (walked) to an existing upload.json."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files_paths", nargs="+", help="files or folders")
        parser.add_argument("--upload-path", required=True, help="the upload.json to extend")

    def handle(self, *args: object, files_paths: list[str], upload_path: str, **options: object) -> None:
        try:
            added = append_to_upload(files_paths, upload_path)
        except (OSError, ValueError, TypeError, ManifestInvalid) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{added} entries added to {upload_path}")
