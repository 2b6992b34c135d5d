"""One fan-out per server process for the dashboards' websockets (DashboardConsumer, KioskConsumer).

A studio has hundreds of screens and dozens of jobs: relayed one by one, every progress message of
every job would be a Redis entry, a decode, a JSON encoding and a websocket frame per screen (20 jobs x
4/s x 200 screens = 16,000 frames a second). Instead the hub of each process (one per event loop) is
the only subscriber of the dashboard groups its screens need (`team.<id>`, or `teams.all` for staff),
keeps the latest progress of each job and every state and watch message in order, and every
FLUSH_SECONDS sends each screen one frame `{"type": "dashboard.batch", "messages": [...]}`, encoded
once for all screens that see the same teams. A screen only gets the messages of its teams (the
publisher puts the job's `team` in each message; progress.dashboard_groups).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from channels.layers import get_channel_layer

from transfers import progress

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.05  # a message waits at most this long; the screens get at most 20 frames a second

_SEEN_KEPT = 10_000  # messages remembered to drop their second copy (a second copy comes within milliseconds)

Teams = frozenset[int] | None  # the teams a screen may see; None: every team (staff)


class DashboardHub:
    def __init__(self) -> None:
        self.layer = get_channel_layer(progress.DASHBOARD_LAYER)
        self.screens: dict[Any, Teams] = {}  # consumer -> its teams
        self.needed: dict[str, int] = {}  # group -> how many screens need it
        self.channel: str | None = None
        self.in_order: list[dict[str, Any]] = []  # state and watch messages, all of them
        self.latest: dict[int, dict[str, Any]] = {}  # job -> its latest progress message
        self.flush_handle: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.lock = asyncio.Lock()
        self.seen: set[tuple[Any, Any, Any]] = set()

    @staticmethod
    def groups(teams: Teams) -> list[str]:
        return [progress.STAFF_GROUP] if teams is None else [progress.team_group(team) for team in sorted(teams)]

    async def join(self, screen: Any, teams: Teams) -> None:
        async with self.lock:  # screens connect by the hundred at once: one channel, each group added once
            if self.channel is None:
                self.channel = await self.layer.new_channel()
                self._spawn(self._receive(self.channel))
            self.screens[screen] = teams
            for group in self.groups(teams):
                self.needed[group] = self.needed.get(group, 0) + 1
                if self.needed[group] == 1:
                    await self.layer.group_add(group, self.channel)

    async def leave(self, screen: Any) -> None:
        async with self.lock:
            if screen not in self.screens:
                return
            for group in self.groups(self.screens.pop(screen)):
                self.needed[group] -= 1
                if not self.needed[group]:
                    del self.needed[group]
                    await self.layer.group_discard(group, self.channel)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _receive(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # a Redis that went away: the layer reconnects; the screens refetch on reconnect
                logger.warning("dashboard hub: receive failed; trying again in a second", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            self.take(message)

    def take(self, message: dict[str, Any]) -> None:
        # A hub in both a team's group and the staff's gets that team's messages twice: once is enough.
        key = (message.get("type"), message.get("job"), message.get("sent_at"))
        if key in self.seen:
            return
        if len(self.seen) > _SEEN_KEPT:
            self.seen.clear()
        self.seen.add(key)
        if message.get("type") == "job.progress":
            self.latest[message["job"]] = message  # latest wins
        else:
            self.in_order.append(message)
        if self.flush_handle is None:
            self.flush_handle = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._spawn, self.flush())

    async def flush(self) -> None:
        self.flush_handle = None
        messages = self.in_order + list(self.latest.values())
        self.in_order, self.latest = [], {}
        frames: dict[Teams, str | None] = {}
        for screen, teams in list(self.screens.items()):
            if teams not in frames:
                theirs = [m for m in messages if teams is None or m.get("team") in teams]
                frames[teams] = json.dumps({"type": "dashboard.batch", "messages": theirs}) if theirs else None
            frame = frames[teams]
            if frame is None:
                continue
            try:
                await screen.send(text_data=frame)
            except Exception:  # a screen that went away meanwhile; the others still get theirs
                logger.debug("a dashboard screen could not be sent its frame", exc_info=True)


_hubs: dict[asyncio.AbstractEventLoop, DashboardHub] = {}


def hub() -> DashboardHub:
    """The hub of the running event loop (daphne runs one per process)."""
    loop = asyncio.get_running_loop()
    for old in [other for other in _hubs if other.is_closed()]:
        del _hubs[old]  # a test's loop, gone
    if loop not in _hubs:
        _hubs[loop] = DashboardHub()
    return _hubs[loop]
