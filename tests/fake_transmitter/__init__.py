"""The fake rayvision_transmitter (an executable script in this folder) and what tests need around it.

See the script's docstring for its flags, storage layout and FAKE_* knobs.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfers.engine.transmitter.command import TransmitSpec, TransmitType

FAKE_DIR = Path(__file__).resolve().parent
FAKE_EXE = FAKE_DIR / "rayvision_transmitter"
STORAGE_ID = "10201"
USER_ID = "100001"


@dataclass
class FakeFox:
    """A fake farm storage for the fake transmitter, and the log of its runs."""

    storage: Path
    log: Path
    spec_defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def input_area(self) -> Path:
        return self.storage / "input" / f"{STORAGE_ID}-{USER_ID}"

    @property
    def output_area(self) -> Path:
        return self.storage / "output" / f"{STORAGE_ID}-{USER_ID}"

    def runs(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def speeds(self) -> list[str]:
        return [run["argv"][run["argv"].index("-s") + 1] for run in self.runs()]

    def spec(self, transmit_type: TransmitType, local: str, remote: str, max_speed: int | None) -> TransmitSpec:
        """The leg's spec factory: the fake found on PATH, its FAKE_* knobs as they are now."""
        knobs = tuple((name, value) for name, value in os.environ.items() if name.startswith("FAKE_"))
        return TransmitSpec(
            exe=shutil.which("rayvision_transmitter") or str(FAKE_EXE),  # the fixture put it first on PATH
            engine="aspera",
            host="127.0.0.1",
            port=10221,
            storage_id=STORAGE_ID,
            user_id=USER_ID,
            transmit_type=transmit_type,
            local=local,
            remote=remote,
            max_speed=max_speed,
            extra_env=knobs,
            **self.spec_defaults,
        )
