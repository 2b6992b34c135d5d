"""The download kinds attacked: other teams through every door, local paths and farm outputs that try to
escape, names that collide, inputs of the wrong type or size, a full disk, a lost broker. Each test is a
behaviour that must hold; each one that did not hold when written is named in the branch's report."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from tests.conftest import wait_for
from tests.web.test_downloads import _files, _output, _render, _run, _same, _start, account, enqueued, lead, local
from transfers import execution, kinds, progress, services
from transfers.farm_events import Actor, farm_event_record
from transfers.models import FarmFrame, TransferItem, TransferJob

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["account", "enqueued", "lead", "local"]  # fixtures shared with test_downloads

SYSTEM = Actor(user=None)


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _post(client: Client, url: str, body: Any) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json")


# --- names that collide --------------------------------------------------------------------------------


def test_filename_format_false_with_two_tasks_of_one_scene_loses_no_frame(account, lead, local, enqueued):
    first = _render(account, frames=2, scene="shot")
    second = _render(account, frames=2, scene="shot")

    job = _run(
        _start(
            "download",
            account,
            lead,
            task_id_list=[first.task_id, second.task_id],
            local_path=str(local),
            download_filename_format="false",
        )
    )

    assert job.status == TransferJob.Status.COMPLETED, job.error
    arrived = sorted((local / name).read_bytes() for name in _files(local))
    sent = sorted((_output(account) / name).read_bytes() for name in _files(_output(account)))
    assert arrived == sent, "every frame of both tasks is kept locally, none written over by the other task's"
