"""schemathesis against the API's own OpenAPI schema: every operation, called as a lead with a token on
a small world (a team with a member, a local farm account, a manifest, a job, a group, a farm task, a kiosk
link), answers no 5xx, and every answer conforms to the schema (status code documented, content type, body).
Bounded and deterministic: a few derandomized examples per operation, in-process through the WSGI app (no server to start)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from transfers import groups, kiosks
from transfers.api_tokens import api_token_create
from transfers.models import AuditEvent

MAX_EXAMPLES = 5


def _schema() -> Any:
    generated = SchemaGenerator().get_schema(request=None, public=True)
    config = SchemathesisConfig.from_dict(
        {
            # the boundary cases of every parameter and body field, but not every other HTTP method on each URL
            "phases": {"coverage": {"unexpected-methods": []}},
            # a door's body is any of several kinds' options: their combined boundary cases are the slowest part
            "operations": [
                {"include-operation-id": ["accounts_start", "manifests_start"], "phases": {"coverage": {"enabled": False}}}
            ],
        }
    )
    loaded = schemathesis.openapi.from_dict(json.loads(OpenApiJsonRenderer().render(generated)), config=config)
    loaded.app = get_wsgi_application()
    return loaded


schema = _schema()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class World:
    key: str
    ids: dict[str, int]  # a path parameter's name, by the path's first part: the id of a real object


@pytest.fixture
def _keep_the_connection():
    """The WSGI handler closes the database connection after each request (request_finished), which would
    close the test's transaction; Django's test client keeps it open the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(_keep_the_connection, team, make_user, make_account, make_manifest, make_job, make_farm_task, farm_root) -> World:
    lead = make_user("lead", team=team, role="lead")
    account = make_account(team, name="farm")
    manifest = make_manifest(account, files=2)
    job = make_job(manifest=manifest, created_by=lead, status="running")
    task = make_farm_task(account, task_id=4242)
    group = groups.group_create(manifests=[make_manifest(account, files=2, name="part.json")], pool_size=1, options={}, user=lead)
    member = make_user("member", team=team, role="member").memberships.get(team=team)
    kiosk, _ = kiosks.kiosk_create(team=team, name="wall", user=lead)
    ids = {
        "accounts": account.pk,
        "manifests": manifest.pk,
        "jobs": job.pk,
        "transfer-tasks": job.pk,
        "groups": group.pk,
        "teams": team.pk,
        "farm": account.pk,
        "task_id": task.task_id,
        "member": member.pk,
        "kiosks": kiosk.pk,
        "audit": AuditEvent.objects.values_list("pk", flat=True).first() or 1,  # the lead is not staff: a 404 anyway
    }
    return World(key=api_token_create(user=lead, name="schemathesis")[1], ids=ids)


def _aim(case: Any, world: World) -> None:
    """Most examples name the world's real objects (a random id is a 404, which says little); one in four
    keeps its generated id, so unknown ids are tried too."""
    section = case.path.split("/")[2]
    for name, value in list((case.path_parameters or {}).items()):
        if isinstance(value, int) and value % 4 == 0:
            continue
        if name in ("id", "account_id"):
            case.path_parameters[name] = world.ids[section]
        elif name in ("task_id", "member"):
            case.path_parameters[name] = world.ids[name]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_as_its_schema_says(case: Any, world: World) -> None:
    _aim(case, world)
    case.call_and_validate(headers={"Authorization": f"Token {world.key}"}, checks=CHECKS)
