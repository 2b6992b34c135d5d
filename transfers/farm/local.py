"""The local farm: a folder per account with the farm's storage areas, on this machine's disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

AREAS = ("input", "output", "config")  # assets, rendered frames, task configuration files


@dataclass(frozen=True)
class LocalFarm:
    root: Path

    def area(self, name: str) -> Path:
        if name not in AREAS:
            raise ValueError(f"unknown storage area {name!r}; expected one of {', '.join(AREAS)}")
        return self.root / name

    def ensure(self) -> LocalFarm:
        for name in AREAS:
            self.area(name).mkdir(parents=True, exist_ok=True)
        return self
