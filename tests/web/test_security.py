"""Hardening of the edges: unknown websocket paths, login throttling, security headers, file modes."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from rvweb.asgi import application
from transfers.consumers import CLOSE_NOT_FOUND

ALLOWED_ORIGIN = b"http://127.0.0.1"


# --- websocket paths no route matches ------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/ws/nope/", "/ws/jobs/abc/", "/ws/jobs/1/extra/", "/", "/ws/jobs/%2e%2e/"])
async def test_a_websocket_path_no_route_matches_is_closed_cleanly(path):
    socket = WebsocketCommunicator(application, path, headers=[(b"origin", ALLOWED_ORIGIN), (b"host", b"127.0.0.1")])

    accepted, code = await socket.connect(timeout=5)

    assert (accepted, code) == (False, CLOSE_NOT_FOUND)
