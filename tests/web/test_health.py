"""/healthz against the real database, broker and channel layer, and with the broker gone."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from rvweb import health

pytestmark = pytest.mark.django_db


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A localhost port that is bound but never listens: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def broker_down(monkeypatch, refusing_port) -> str:
    # Celery reads CELERY_BROKER_URL from the environment before its configuration.
    url = f"redis://:hunter2-broker-password@127.0.0.1:{refusing_port}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    return url


def test_healthz_answers_200_when_every_service_answers(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok", "channel_layer": "ok"}


def test_healthz_answers_503_naming_the_broker_when_it_is_unreachable(client, broker_down):
    response = client.get("/healthz")

    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "unavailable"
    assert report["broker"].startswith("error: ")
    assert (report["database"], report["channel_layer"]) == ("ok", "ok")


def test_healthz_never_shows_the_broker_url_of_an_unreachable_broker(client, broker_down):
    response = client.get("/healthz")

    assert b"hunter2-broker-password" not in response.content
    assert broker_down.encode() not in response.content


def test_healthz_never_shows_the_text_of_a_failure(client, monkeypatch):
    url = "redis://:hunter2-broker-password@broker.example.com:6379/0"

    def failing_broker() -> None:
        raise ConnectionError(f"Error connecting to {url}")

    monkeypatch.setitem(health.CHECKS, "broker", failing_broker)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["broker"] == "error: ConnectionError"
    assert b"hunter2" not in response.content


def test_healthz_is_never_cached(client):
    response = client.get("/healthz")

    assert "no-cache" in response["Cache-Control"]
