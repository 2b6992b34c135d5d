"""Install the vendor's transmitter (rayvision-sync 3.1.8's linux binaries) into DATA_DIR/transmitter/,
checked against the pinned sha256; a second run with the same version does nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from transfers.transmitter_install import InstallError, install_transmitter


class Command(BaseCommand):
    help = "Download rayvision-sync==3.1.8 with pip, check its sha256 and install its transmitter into the data dir."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--wheel", type=Path, help="use this wheel file instead of downloading one (still checked)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result, fresh = install_transmitter(wheel=options.get("wheel"))
        except InstallError as exc:
            raise CommandError(str(exc)) from exc
        what = "installed" if fresh else "already installed"
        self.stdout.write(
            self.style.SUCCESS(
                f"transmitter {result.transmitter_version} (rayvision-sync {result.version}) {what}: {result.path}"
            )
        )
