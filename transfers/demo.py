"""First-visit setup: an admin account (staff), a "Studio" team owning a demo local farm account, and a demo
manifest of sample files."""

from __future__ import annotations

import json
import os
import random
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from transfers import services
from transfers.models import FarmAccount, FarmTask, Manifest, Membership, Team

ADMIN_USERNAME = "admin"
DEMO_TEAM = "Studio"
DEMO_ACCOUNT = "Demo local farm"
DEMO_MANIFEST = "Demo scene assets"
DEMO_FILES = 300
DEMO_SCENE = "demo_shot"
DEMO_FRAMES = 24


def admin_ensure(*, password: str | None) -> tuple[str, str | None]:
    """The admin's name, and its password when it was just set (None when an existing one was kept)."""
    User = get_user_model()
    user = User.objects.filter(username=ADMIN_USERNAME).first()
    if user is not None and not password:
        return ADMIN_USERNAME, None
    chosen = password or secrets.token_urlsafe(12)
    with transaction.atomic():
        if user is None:
            # Audited as "user.create" by the system (transfers.signals), like every user made outside the admin.
            user = User.objects.create_superuser(ADMIN_USERNAME, email="", password=chosen)
            team, _ = Team.objects.get_or_create(name=DEMO_TEAM)
            Membership.objects.get_or_create(user=user, team=team, defaults={"role": Membership.Role.LEAD})
        else:
            user.set_password(chosen)
            user.save(update_fields=["password"])
            services.audit_record(actor=None, action="user.password_set", target=user)
    return ADMIN_USERNAME, chosen


def _demo_tree(root: Path, count: int) -> list[Path]:
    """A few hundred files shaped like scene assets (textures, caches, a scene), made once."""
    rng = random.Random(20261127)
    folders = ["textures", "caches", "geometry", "scenes"]
    paths = []
    for number in range(count):
        folder = folders[number % len(folders)]
        path = root / folder / f"asset_{number:04d}.bin"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            size = rng.choice([4, 16, 64, 128, 256, 512]) * 1024
            path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def demo_ensure(*, user: object | None = None) -> Manifest:
    """The demo account (in the Studio team) and its manifest; add users to the team to let them use it."""
    team, _ = Team.objects.get_or_create(name=DEMO_TEAM)
    account, _ = FarmAccount.objects.get_or_create(name=DEMO_ACCOUNT, defaults={"kind": FarmAccount.Kind.LOCAL, "team": team})
    services.farm_storage(account=account)
    existing = Manifest.objects.filter(name=DEMO_MANIFEST, account=account).first()
    if existing is not None:
        return existing
    root = Path(settings.ALLOWED_LOCAL_ROOTS[0]) / "demo"
    files = _demo_tree(root, DEMO_FILES)
    # The SDK's rule for a POSIX local path: the server path is the same absolute path.
    document = {"asset": [{"local": str(path), "server": str(path)} for path in files]}
    return services.manifest_import(
        name=DEMO_MANIFEST,
        account=account,
        data=json.dumps(document).encode(),
        user=user,  # type: ignore[arg-type]
    )


def demo_render_ensure() -> FarmTask:
    """A finished render on the demo account (DEMO_FRAMES frames in its output area), to download; made once."""
    from transfers.farm.simulate import render_run, render_start
    from transfers.farm_events import Actor

    account = FarmAccount.objects.get(name=DEMO_ACCOUNT)
    existing = FarmTask.objects.filter(account=account, scene=DEMO_SCENE, parent=None).order_by("task_id").first()
    if existing is not None:
        return existing
    actor = Actor(user=None, request_id="bootstrap")
    plan = render_start(account=account, scene=DEMO_SCENE, frames=DEMO_FRAMES, actor=actor, interval=0.0)
    render_run(plan, actor=actor, sleep=lambda seconds: None)
    return FarmTask.objects.get(account=account, task_id=plan.task_id)
