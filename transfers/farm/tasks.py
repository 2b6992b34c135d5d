"""Celery tasks of the local farm: orchestration only (ids and numbers in, never objects or secrets)."""

from __future__ import annotations

from celery import shared_task

from transfers.farm.simulate import RenderPlan, render_run
from transfers.farm_events import Actor


@shared_task(name="transfers.farm.simulate_render", acks_late=False)
def simulate_render(account_id: int, task_id: int, frames: int, interval: float, request_id: str = "") -> int:
    """Write the frames of a render that render_start created (the demo's "Simulate a render" button)."""
    plan = RenderPlan(account_id=account_id, task_id=task_id, frames=frames, interval=interval)
    return render_run(plan, actor=Actor(user=None, request_id=request_id))
