from django.core.management.base import BaseCommand, CommandError, CommandParser

from transfers.engine.manifest import ManifestInvalid
from transfers.engine.sdk import cutting_upload


class Command(BaseCommand):
    help = "The SDK's cutting_upload: split an upload.json into upload_1.json … of at most N entries each."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("upload_path")
        parser.add_argument("--max-resources-number", type=int, required=True)
        parser.add_argument("--after-cutting-position", help="folder for the chunks (default: beside the original)")

    def handle(
        self, *args: object, upload_path: str, max_resources_number: int, after_cutting_position: str | None, **options: object
    ) -> None:
        try:
            paths = cutting_upload(upload_path, max_resources_number, after_cutting_position)
        except (OSError, ValueError, ManifestInvalid) as exc:
            raise CommandError(str(exc)) from None
        for path in paths:
            self.stdout.write(path)
