"""Kiosk links: a lead's signed, revocable link that shows one team's dashboard on a studio screen.

The token is `django.core.signing` of the kiosk's id and a random nonce (salt SALT), so a forged or
altered token fails its signature before the database is asked; only its SHA-256 digest is stored, and
a token is good only while its row is not revoked. The token is shown to the lead once, when made.
Revoking tells the kiosk's open websockets (group `kiosk.<id>`) to close.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core import signing
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from transfers import progress, selectors
from transfers.models import Kiosk, Team
from transfers.services import _require, audit_record

logger = logging.getLogger(__name__)

SALT = "rvweb.kiosk"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def kiosk_group(kiosk_id: int) -> str:
    return f"kiosk.{kiosk_id}"


def kiosk_create(*, team: Team, name: str, user: Any, request: HttpRequest | None = None) -> tuple[Kiosk, str]:
    """A new kiosk link for the team (its leads only): the row and the token, which is never shown again."""
    _require(user, "manage", team)
    name = name.strip()[:100] or "studio screen"
    with transaction.atomic():
        kiosk = Kiosk.objects.create(team=team, name=name, digest=secrets.token_hex(32), created_by=user)
        token = signing.dumps({"k": kiosk.pk, "n": secrets.token_urlsafe(16)}, salt=SALT, compress=True)
        Kiosk.objects.filter(pk=kiosk.pk).update(digest=_digest(token))
        audit_record(actor=user, action="kiosk.create", target=kiosk, request=request, after={"team": team.pk, "name": name})
    return kiosk, token


def kiosk_revoke(*, kiosk: Kiosk, user: Any, request: HttpRequest | None = None) -> None:
    _require(user, "manage", kiosk.team)
    with transaction.atomic():
        changed = Kiosk.objects.filter(pk=kiosk.pk, revoked=False).update(revoked=True, revoked_at=timezone.now())
        if changed:
            audit_record(actor=user, action="kiosk.revoke", target=kiosk, request=request, before={"revoked": False})
            transaction.on_commit(lambda: _close_screens(kiosk.pk))


def kiosk_from_token(token: str) -> Kiosk | None:
    """The live kiosk this token opens, or None (forged, altered, unknown or revoked: all alike)."""
    try:
        payload = signing.loads(token, salt=SALT)
        pk = int(payload["k"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
    kiosk = selectors.kiosk_live(pk)
    if kiosk is None or not hmac.compare_digest(kiosk.digest, _digest(token)):
        return None
    return kiosk


def _close_screens(kiosk_id: int) -> None:
    layer = get_channel_layer(progress.DASHBOARD_LAYER)
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(kiosk_group(kiosk_id), {"type": "kiosk.revoked"})
    except Exception as exc:  # noqa: BLE001 - best effort: the screens fail their next reconnect anyway
        logger.warning("kiosk %s revoked, its screens not told (%s)", kiosk_id, type(exc).__name__)
