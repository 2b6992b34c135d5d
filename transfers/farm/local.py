"""The local farm: a folder per account with the farm's storage areas, on this machine's disk.

Its tasks are rows of FarmTask, made and moved by the farm events (transfers.farm_events): by
`manage.py simulate_render`, the demo's "Simulate a render" button, or a studio's own render manager
posting to the farm events API. Its frames are the files in the output area: the ones announced
finished (FarmFrame rows), and the ones written there but not announced yet (maybe half-written).
"""

from __future__ import annotations

import os
import tempfile
from functools import partial
from pathlib import Path

from django.conf import settings

from transfers.engine.endpoints import Endpoint, open_endpoint
from transfers.farm.base import AREAS, CheckStep, TransferLine, check_area
from transfers.farm.storage import StorageFarm, step
from transfers.models import FarmAccount


class LocalFarm(StorageFarm):
    """The connector of a local farm account: storage under FARM_ROOT/account-<pk>/{input,output,config}."""

    kind = FarmAccount.Kind.LOCAL

    @property
    def root(self) -> Path:
        return Path(settings.FARM_ROOT) / f"account-{self.account.pk}"

    def ensure(self) -> LocalFarm:
        for name in AREAS:
            self.area_root(name).mkdir(parents=True, exist_ok=True)
        return self

    def area_root(self, name: str) -> Path:
        return self.root / check_area(name)

    def open_area(self, name: str) -> Endpoint:
        label = f'{check_area(name)} storage of farm account "{self.account.name}"'
        return open_endpoint("local", root=self.ensure().area_root(name), label=label, where="the farm storage")

    def check(self) -> list[CheckStep]:
        """The storage root, then each area: there (made if missing), a folder, inside FARM_ROOT once
        symlinks are resolved, and writable (a file is made and removed)."""
        farm_root = Path(settings.FARM_ROOT).resolve()
        steps = [step(f"storage root {self.root}", lambda: _inside(self.root, farm_root) or _made(self.root))]
        for name in AREAS:
            area = self.area_root(name)
            steps.append(step(f"{name} area exists", partial(_made, area)))
            steps.append(step(f"{name} area is a folder", partial(_folder, area)))
            steps.append(step(f"{name} area is inside the farm root", partial(_inside, area, farm_root)))
            steps.append(step(f"{name} area is writable", partial(_writable, area)))
        return steps

    def lines(self) -> list[TransferLine]:
        return [TransferLine(name="loopback", engine="local", server="127.0.0.1", port=0, is_default=True)]


def _made(path: Path) -> str:
    if path.is_symlink() or path.exists():
        return "present"
    path.mkdir(parents=True, exist_ok=True)
    return "made (it was missing)"


def _folder(path: Path) -> str:
    if path.is_symlink():
        raise ValueError(f"{path} is a symlink, not a folder")
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder" if path.exists() else f"{path} does not exist")
    return "a folder"


def _inside(path: Path, farm_root: Path) -> str:
    resolved = path.resolve()
    if resolved != farm_root and farm_root not in resolved.parents:
        raise ValueError(f"{path} leads to {resolved}, outside the farm root {farm_root} (RVWEB_FARM_ROOT)")
    return ""


def _writable(path: Path) -> str:
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{path} is not writable by this server (user id {os.getuid()})")
    with tempfile.NamedTemporaryFile(dir=path, prefix=".rvweb-check-"):
        pass
    return "a file was written and removed"
