"""API tokens for scripts: a user makes a key (shown once), uses it as `Authorization: Token <key>` (or
`Bearer <key>`), and revokes it. Only the key's SHA-256 digest is stored, with its first characters to
tell keys apart; the key never reaches a log, an audit row or a page after the one that made it.

A key is found by its digest (a unique index), then compared in constant time; a revoked token or an
inactive user is refused. `last_used_at` is written at most once a minute per token, so a busy script
does not turn every read into a write.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from transfers.models import ApiToken
from transfers.services import audit_record

KEY_PREFIX = "rvt_"
SHOWN_CHARS = len(KEY_PREFIX) + 6  # "rvt_" and 6 of the key's 43 random characters
USED_EVERY = timedelta(minutes=1)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_tokens_for(user: Any) -> QuerySet[ApiToken]:
    """The user's own tokens (revoked ones too), newest first; nobody sees another user's."""
    if user is None or not user.is_authenticated:
        return ApiToken.objects.none()
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-pk")


def api_token_create(*, user: Any, name: str, request: HttpRequest | None = None) -> tuple[ApiToken, str]:
    """A new token for `user`: the row and the key, which is returned here only."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        name = name.strip()[:100] or "script"
        token = ApiToken.objects.create(user=user, name=name, digest=_digest(key), prefix=key[:SHOWN_CHARS])
        audit_record(
            actor=request.user if request is not None else None,
            action="api_token.create",
            target=token,
            request=request,
            after={"name": token.name, "prefix": token.prefix, "user": user.get_username()},
        )
    return token, key


def api_token_revoke(*, token: ApiToken, request: HttpRequest | None = None) -> bool:
    """Revoke the token (it stays listed); False when it already was."""
    with transaction.atomic():
        if ApiToken.objects.filter(pk=token.pk, revoked=False).update(revoked=True) != 1:
            return False
        audit_record(
            actor=request.user if request is not None else None,
            action="api_token.revoke",
            target=token,
            request=request,
            before={"revoked": False},
            after={"revoked": True, "name": token.name, "prefix": token.prefix},
        )
    token.revoked = True
    return True


def api_token_user(key: str) -> tuple[Any, ApiToken] | None:
    """The active user and the live token this key is; None for anything else (unknown, revoked, inactive)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = _digest(key)
    token = ApiToken.objects.select_related("user").filter(digest=digest).first()
    if token is None or not hmac.compare_digest(token.digest, digest) or token.revoked or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token.user, token
