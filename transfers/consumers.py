"""Websocket consumers: thin. Authenticate on connect, authorise, then relay their groups' messages.

JobConsumer: one job's page. DashboardConsumer: the dashboards of the teams a user may view (staff: all
teams). KioskConsumer: one team's dashboard for a kiosk link; it authenticates by the link's token,
sent as its first message (not in the URL, which servers log), not by a user's session. The two
dashboard consumers are fed in batches by their process's hub (transfers.dashboard_hub).
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer

from transfers import dashboard_hub, kiosks, metrics, progress, selectors

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
KIOSK_TOKEN_WAIT = 10.0  # seconds a kiosk socket may stay open without its token


class JobConsumer(AsyncJsonWebsocketConsumer):
    """Live progress of one job, for a user who may see it (selectors.jobs_for: their team's jobs, or staff)."""

    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        if not await self._may_see(user, job_id):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = progress.job_group(job_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        metrics.ws_opened("job")
        self.counted = True

    async def disconnect(self, code: int) -> None:
        if getattr(self, "counted", False):
            metrics.ws_closed("job")
            self.counted = False
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients only listen; anything they send is ignored."""

    async def job_progress(self, event: progress.JobProgress) -> None:
        await self.send_json(event)

    async def job_state(self, event: progress.JobState) -> None:
        await self.send_json(event)

    async def job_watch(self, event: progress.JobWatch) -> None:
        await self.send_json(event)

    @database_sync_to_async
    def _may_see(self, user: Any, job_id: int) -> bool:
        return selectors.jobs_for(user).filter(pk=job_id).exists()


class _Screen(AsyncJsonWebsocketConsumer):
    """A dashboard screen: fed by its process's hub (transfers.dashboard_hub), in batches; ignores what it is sent."""

    channel_layer_alias = progress.DASHBOARD_LAYER
    watching = False

    screen_kind = "dashboard"

    async def watch(self, teams: dashboard_hub.Teams) -> None:
        self.watching = True
        metrics.ws_opened(self.screen_kind)
        await dashboard_hub.hub().join(self, teams)

    async def disconnect(self, code: int) -> None:
        if self.watching:
            metrics.ws_closed(self.screen_kind)
            await dashboard_hub.hub().leave(self)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients only listen; anything they send is ignored."""


class DashboardConsumer(_Screen):
    """The dashboard of a signed-in user: the jobs of the teams they may view (staff: every team's)."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        teams = await self._teams(user)  # before accepting: the join then follows the accept at once
        await self.accept()
        await self.watch(teams)

    @database_sync_to_async
    def _teams(self, user: Any) -> dashboard_hub.Teams:
        if user.is_staff or user.is_superuser:
            return None
        return frozenset(selectors.teams_for(user).values_list("pk", flat=True))


class KioskConsumer(_Screen):
    """A kiosk screen: accepted, then fed its team's jobs once its first message brings a live token."""

    screen_kind = "kiosk"

    kiosk_id: int | None = None
    group: str | None = None

    async def connect(self) -> None:
        await self.accept()
        self._deadline = asyncio.create_task(self._close_without_token())

    async def _close_without_token(self) -> None:
        await asyncio.sleep(KIOSK_TOKEN_WAIT)
        if self.kiosk_id is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.kiosk_id is not None:
            return  # authenticated already: clients only listen
        token = content.get("token") if isinstance(content, dict) else None
        kiosk = await database_sync_to_async(kiosks.kiosk_from_token)(token) if isinstance(token, str) else None
        if kiosk is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.kiosk_id = kiosk.pk
        self._deadline.cancel()
        self.group = kiosks.kiosk_group(kiosk.pk)  # told when the link is revoked
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json({"type": "kiosk.ready", "team": kiosk.team.name})
        await self.watch(frozenset({kiosk.team_id}))

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "_deadline"):
            self._deadline.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        await super().disconnect(code)

    async def kiosk_revoked(self, event: dict[str, Any]) -> None:
        await self.close(code=CLOSE_FORBIDDEN)


class NotFoundConsumer(AsyncWebsocketConsumer):
    """Any websocket path no route matches: closed with 4404 instead of a 500 and a traceback."""

    async def connect(self) -> None:
        await self.close(code=CLOSE_NOT_FOUND)
