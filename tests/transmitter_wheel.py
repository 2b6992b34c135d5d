"""The SDK wheel for the tests that need the vendor's files, downloaded once per test data dir."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from django.conf import settings

from transfers.transmitter_install import InstallError, download_wheel


@cache
def cached_wheel() -> tuple[Path | None, str]:
    """(the wheel, "") or (None, why it could not be downloaded)."""
    try:
        return download_wheel(Path(settings.DATA_DIR) / "wheel-cache"), ""
    except InstallError as exc:
        return None, f"the rayvision-sync 3.1.8 wheel cannot be downloaded here: {exc}"
