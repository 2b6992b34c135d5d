"""Benchmark 9: the studio dashboard under load (issue 8 item 10).

A live daphne (its own process, rvweb.asgi as served) has 200 websocket clients (the `websockets`
package, asyncio, one thread of this process) on /ws/dashboard/: nine in ten a viewer of the team (its
group `team.<id>`), one in ten staff (`teams.all`). Then 20 upload jobs of small files run at once on
a local farm account, paced with max_speed so that they last ~25 s, in one worker process
(tests/bench/dashboard_child.py: execution.job_run, one thread per job, without the broker). Every
progress message carries `sent_at` (time.time() when the worker published it); a client notes
time.time() when the message arrives and does nothing else then (it parses afterwards). Same machine,
same clock. Figures: the p50/p95/max of arrival - sent_at over every progress message every client got
(goal p95 <= 250 ms), and daphne's CPU (psutil: its user + system seconds over the jobs' wall seconds).
Django here runs on a throwaway SQLite in the scratch folder with an embedded Redis (as benchmark 7).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.bench.common import Config, Row, log
from tests.bench.downloading import _Bench, _quantile, _wait
from tests.bench.scale import ROOT

GOAL_SECONDS = 0.25


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Daphne:
    def __init__(self, log_path: Path) -> None:
        from django.conf import settings

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, REDIS_URL=settings.REDIS_URL, BROKER_URL=settings.BROKER_URL, PYTHONUNBUFFERED="1")
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "rvweb.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        _wait(self._healthy, 60, "daphne /healthz")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"daphne exited (exit {self.process.returncode}); see {self.log.name}")
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class _Clients(threading.Thread):
    """`count` dashboard websockets on their own event loop; each notes (arrival time, text) of every message."""

    def __init__(self, url: str, cookies: list[str], count: int) -> None:
        super().__init__(name="bench-ws-clients", daemon=True)
        self.url = url.replace("http://", "ws://") + "/ws/dashboard/"
        self.origin = url
        self.cookies = cookies
        self.count = count
        self.received: list[list[tuple[float, str]]] = [[] for _ in range(count)]
        self.connected = 0
        self.errors: list[str] = []
        self.loop = asyncio.new_event_loop()
        self._quit: asyncio.Event | None = None

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._quit = asyncio.Event()
        tasks = [asyncio.create_task(self._one(index)) for index in range(self.count)]
        await self._quit.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, index: int) -> None:
        from websockets.asyncio.client import connect

        got = self.received[index]
        try:
            async with connect(
                self.url,
                origin=self.origin,  # type: ignore[arg-type]
                additional_headers={"Cookie": self.cookies[index % len(self.cookies)]},
                open_timeout=60,
                max_queue=None,
            ) as ws:
                self.connected += 1
                async for text in ws:
                    got.append((time.time(), str(text)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a dropped client is a figure
            self.errors.append(f"client {index}: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        if self._quit is not None:
            self.loop.call_soon_threadsafe(self._quit.set)
        self.join(30)


def _session_cookie(user: Any) -> str:
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _jobs(bench: _Bench, count: int, files: int, size: int, max_speed: int) -> list[int]:
    """`count` upload_asset jobs, each of its own manifest of `files` files of `size` bytes."""
    from transfers import jobs, services

    account = bench.account("dash")
    ids = []
    for number in range(count):
        folder = bench.allowed / bench.config.fresh(f"dash-{number}").name
        folder.mkdir(parents=True)
        paths = []
        for index in range(files):
            path = folder / f"f{index:03d}.bin"
            path.write_bytes(os.urandom(size))
            paths.append(path)
        data = json.dumps({"asset": [{"local": str(p), "server": str(p)} for p in paths]}).encode()
        manifest = services.manifest_import(name=folder.name, account=account, data=data, user=None)
        options = {"max_speed": max_speed}
        job = jobs.job_create(kind="upload_asset", account=account, user=bench.user, manifest=manifest, options=options)
        ids.append(job.pk)
    return ids


def dashboard(config: Config) -> list[Row]:
    import psutil

    clients, count = (50, 5) if config.quick else (200, 20)
    files, size, max_speed = (10, 64 << 10, 64) if config.quick else (20, 256 << 10, 200)  # ~10 s / ~25 s a job
    bench = _Bench(config)  # Django set up from here on
    from django.contrib.auth import get_user_model

    from transfers.models import Membership

    daphne: _Daphne | None = None
    crowd: _Clients | None = None
    try:
        viewer = get_user_model().objects.create_user(f"bench-viewer-{os.getpid()}-{time.time_ns()}", password="-")
        Membership.objects.create(user=viewer, team=bench.team, role=Membership.Role.VIEWER)
        # Nine viewers of the team for one staff member: both kinds of group.
        cookies = [_session_cookie(viewer)] * 9 + [_session_cookie(bench.user)]
        ids = _jobs(bench, count, files, size, max_speed)
        log(f"{count} jobs of {files} x {size >> 10} KiB at max_speed {max_speed} KB/s; {clients} dashboard clients")
        daphne = _Daphne(config.fresh("daphne").with_suffix(".log"))
        crowd = _Clients(daphne.url, cookies, clients)
        crowd.start()
        _wait(lambda: crowd.connected + len(crowd.errors) >= clients, 120, "the clients to connect")
        log(f"{crowd.connected} clients connected ({len(crowd.errors)} failed)")
        process, me = psutil.Process(daphne.process.pid), psutil.Process()
        cpu_before, wall_before = sum(process.cpu_times()[:2]), time.monotonic()
        my_before = sum(me.cpu_times()[:2])
        load_before = os.getloadavg()[0]
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.dashboard_child", *map(str, ids)],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = child.communicate()
        wall = time.monotonic() - wall_before
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        clients_cpu = sum(me.cpu_times()[:2]) - my_before  # the clients' thread, mostly
        load = (load_before + os.getloadavg()[0]) / 2
        if child.returncode != 0:
            raise RuntimeError(f"the worker child failed (exit {child.returncode})")
        took = json.loads(out.strip().splitlines()[-1])["seconds"]
        time.sleep(1.0)  # the last messages on their way
        crowd.stop()
    finally:
        if crowd is not None and crowd.is_alive():
            crowd.stop()
        if daphne is not None:
            daphne.stop()
        bench.close()
    latencies, published, per_client = [], set(), []
    for got in crowd.received:
        progress = 0
        for arrived, text in got:
            frame = json.loads(text)
            for message in frame.get("messages", []):
                if message.get("type") == "job.progress":
                    latencies.append(arrived - message["sent_at"])
                    published.add((message["job"], message["sent_at"]))
                    progress += 1
        per_client.append(progress)
    if not latencies:
        frames = [text[:300] for got in crowd.received for _, text in got][:3]
        raise RuntimeError(f"no progress message reached any client; errors: {crowd.errors[:3]}; frames: {frames}")
    p50, p95 = statistics.median(latencies), _quantile(latencies, 0.95)
    job_seconds = sorted(took.values())
    log(
        f"jobs took {job_seconds[0]:.1f}-{job_seconds[-1]:.1f} s; {len(published)} progress messages published "
        f"({len(published) / wall:.0f}/s), {len(latencies)} received ({len(latencies) / wall:.0f}/s)"
    )
    ms = f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    log(f"latency {ms}; daphne {cpu / wall:.2f} CPU s/s, clients {clients_cpu / wall:.2f} CPU s/s, load ~{load:.1f}")
    name = f"dashboard: {clients} websocket clients while {count} jobs run"
    row = Row(9, f"{name}, sent_at -> receipt", goal=f"p95 <= {GOAL_SECONDS * 1000:.0f} ms")
    row.ours = ms
    row.baseline = f"{len(latencies)} messages received"
    row.ratio_text = f"p95 {p95 * 1000:.0f} ms"
    row.met = p95 <= GOAL_SECONDS
    row.notes += [
        f"{count} upload jobs ({files} x {size >> 10} KiB each, max_speed {max_speed} KB/s) ran for "
        f"{job_seconds[0]:.1f}-{job_seconds[-1]:.1f} s in one worker process (a thread each); {clients} clients "
        f"(9 in 10 a team viewer, 1 in 10 staff) got {min(per_client)}-{max(per_client)} progress messages each; "
        f"{len(published)} published ({len(published) / wall:.0f}/s, at most {_dashboard_rate()}/s per job and group), "
        f"{len(latencies) / wall:.0f}/s delivered; {crowd.connected} clients connected, {len(crowd.errors)} dropped"
        + (f" (first: {crowd.errors[0]})" if crowd.errors else ""),
    ]
    cpu_row = Row(9, f"{name}, daphne's CPU", goal="(measured)")
    cpu_row.ours = f"{cpu / wall:.2f} CPU s per wall s"
    cpu_row.baseline = f"{cpu:.1f} CPU s over {wall:.1f} s"
    cpu_row.notes += [
        f"daphne's CPU: psutil user + system seconds of its process while the jobs ran, on {os.cpu_count()} CPUs; "
        f"the 200 clients (this process) took {clients_cpu / wall:.2f} CPU s/s; load average ~{load:.1f} meanwhile"
    ]
    return [row, cpu_row]


def _dashboard_rate() -> int:
    from django.conf import settings

    return int(settings.DASHBOARD_MAX_PER_SECOND)
