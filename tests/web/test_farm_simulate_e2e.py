"""The demo's "Simulate a render" button, end to end: the page makes the task, a real Celery worker
writes its frames into the output area and posts them as farm events."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from tests.conftest import wait_for
from transfers.engine.paths import PARTIAL_SUFFIX
from transfers.farm import connector_for
from transfers.farm.simulate import FRAME_SIZE
from transfers.models import FarmTask

pytestmark = pytest.mark.django_db(transaction=True)


def _finished(account_id: int) -> FarmTask | None:
    task = FarmTask.objects.filter(account_id=account_id, parent=None).first()
    return task if task is not None and task.status == 25 else None


def test_the_simulate_button_renders_frames_through_the_worker(celery_worker, make_account, make_user):
    account = make_account(name="demo farm")
    lead = make_user("lead", team=account.team, role="lead")
    client = Client()
    client.force_login(lead)
    scene = f"sim_{uuid.uuid4().hex[:8]}"  # the test farm folder outlives the test database's ids

    response = client.post(f"/farm/{account.pk}/simulate", {"scene": scene, "frames": "4", "children": "2", "interval": "0.05"})

    assert response.status_code == 302
    parent = wait_for(lambda: _finished(account.pk), timeout=60, what=f"the render to finish\n{celery_worker.log_tail()}")
    children = list(parent.children.order_by("task_id"))
    assert len(children) == 2 and all(child.status == 25 for child in children)
    outputs = connector_for(account).outputs(parent.task_id)
    assert len(outputs) == 8 and all(o.finished and o.size == FRAME_SIZE for o in outputs)
    output = connector_for(account).area_root("output") / parent.output_folder
    assert not [p for p in output.rglob("*") if PARTIAL_SUFFIX in p.name]
    page = client.get(f"/farm/{account.pk}/").content.decode()
    assert "8/8" in page and "4/4" in page
