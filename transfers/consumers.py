"""Websocket consumers: thin. Authenticate on connect, authorise the job, then relay its group's messages."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer

from transfers import progress, selectors

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


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

    async def disconnect(self, code: int) -> None:
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


class NotFoundConsumer(AsyncWebsocketConsumer):
    """Any websocket path no route matches: closed with 4404 instead of a 500 and a traceback."""

    async def connect(self) -> None:
        await self.close(code=CLOSE_NOT_FOUND)
