"""A PEP 517 build backend for rvweb_client, standard library only: a pure-Python wheel (and an sdist)
of the one package, so `pip install ./client` works offline without setuptools or wheel.

The name and version are pyproject.toml's, read with tomllib (3.11+) or, on 3.10, a line match.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "rvweb_client"
_KEYS = ("name", "version", "description", "requires-python")


def _project() -> dict[str, str]:
    text = (HERE / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib

        project = tomllib.loads(text)["project"]
        return {key: str(project[key]) for key in _KEYS}
    except ImportError:
        found = {key: re.search(rf'^{key} = "(.*)"$', text, re.M) for key in _KEYS}
        return {key: match.group(1) for key, match in found.items() if match}


def _dist_name() -> str:
    project = _project()
    return f"{project['name'].replace('-', '_')}-{project['version']}"


def _metadata() -> str:
    project = _project()
    readme = HERE / "README.md"
    head = (
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
        f"Summary: {project['description']}\nRequires-Python: {project['requires-python']}\n"
    )
    if readme.is_file():
        head += "Description-Content-Type: text/markdown\n\n" + readme.read_text(encoding="utf-8")
    return head


def _sources() -> list[Path]:
    return sorted(p for p in (HERE / PACKAGE).rglob("*.py") if "__pycache__" not in p.parts)


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def get_requires_for_build_wheel(config_settings: object = None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings: object = None) -> list[str]:
    return []


def build_wheel(wheel_directory: str, config_settings: object = None, metadata_directory: str | None = None) -> str:
    info = f"{_dist_name()}.dist-info"
    files = {p.relative_to(HERE).as_posix(): p.read_bytes() for p in _sources()}
    files[f"{info}/METADATA"] = _metadata().encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: rvweb_client _build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/top_level.txt"] = f"{PACKAGE}\n".encode()
    record = "".join(f"{name},{_digest(data)},{len(data)}\n" for name, data in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    name = f"{_dist_name()}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as wheel:
        for path, data in files.items():
            wheel.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return name


def build_sdist(sdist_directory: str, config_settings: object = None) -> str:
    base = _dist_name()
    name = f"{base}.tar.gz"
    members = [*_sources(), HERE / "pyproject.toml", HERE / "_build.py", HERE / "README.md"]
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as sdist:
        for path in members:
            if path.is_file():
                sdist.add(path, arcname=f"{base}/{path.relative_to(HERE).as_posix()}")
        pkg_info = _metadata().encode()
        entry = tarfile.TarInfo(f"{base}/PKG-INFO")
        entry.size = len(pkg_info)
        sdist.addfile(entry, io.BytesIO(pkg_info))
    return name
