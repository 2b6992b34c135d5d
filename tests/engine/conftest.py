"""Fixtures for the transports: the fake transmitter on PATH with a fake farm storage; the tests' own sshd; a real S3 server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_transmitter import FAKE_DIR, FakeFox
from tests.servers.s3server import S3Server, fresh_prefix


@pytest.fixture
def fake_transmitter_dir() -> Path:
    """The folder holding the fake `rayvision_transmitter` script."""
    return FAKE_DIR


@pytest.fixture
def fake_transmitter(fake_transmitter_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFox]:
    """The fake transmitter first on PATH, acting on a fresh storage root, logging its runs."""
    storage = tmp_path / "fox"
    storage.mkdir()
    log = tmp_path / "xmit-runs.jsonl"
    monkeypatch.setenv("PATH", f"{fake_transmitter_dir}:{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_FOX_STORAGE", str(storage))
    monkeypatch.setenv("FAKE_XMIT_LOG", str(log))
    monkeypatch.setenv("FAKE_XMIT_MODE", "ok")
    yield FakeFox(storage, log)


@pytest.fixture
def sftp_root(tmp_path: Path) -> Path:
    """A fresh folder for an SFTP endpoint's root: on the server, which is this machine."""
    root = tmp_path / "remote"
    root.mkdir()
    return root


@pytest.fixture
def s3_prefix(s3_server: S3Server) -> str:
    """A fresh folder of the server's bucket, for one test."""
    return fresh_prefix()
