"""Login lockouts (django-axes): logged and audited, with the attempted username and the address."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model

logger = logging.getLogger("rvweb.security")


@dataclass(frozen=True)
class Login:
    """The audit target of a lockout: the username that was tried (the account may not exist)."""

    pk: str


def _audit_lockout(
    sender: Any, request: Any = None, username: str | None = None, ip_address: str | None = None, **kwargs: Any
) -> None:
    from transfers.services import audit_record

    django_request = getattr(request, "_request", request)  # DRF (Basic auth) wraps Django's request
    if django_request is not request:
        # axes flags the request it was given; its middleware, which answers with the lockout page,
        # sees only Django's. Without this the API would answer a lockout "invalid password".
        django_request.axes_locked_out = True
        django_request.axes_credentials = getattr(request, "axes_credentials", None)
    name = (username or "")[:60]
    logger.warning("login locked out: username=%r address=%s", name, ip_address)
    # The actor is who tried to log in; audit rows name a user only when the account exists.
    account = get_user_model().objects.filter(username=name).first() if name else None
    audit_record(
        actor=account,
        action="auth.lockout",
        target=Login(name),
        request=django_request,
        after={"username": name, "address": ip_address},
        outcome="locked_out",
    )


def connect() -> None:
    user_locked_out.connect(_audit_lockout, dispatch_uid="rvweb-audit-lockout")


def lockout_response(request: Any, original_response: Any = None, credentials: dict[str, Any] | None = None) -> Any:
    """AXES_LOCKOUT_CALLABLE: the lockout page, or under /api/ a 429 in the API's error shape."""
    from axes.helpers import get_client_username, get_cool_off, get_failure_limit
    from django.conf import settings
    from django.http import JsonResponse
    from django.shortcuts import render

    from transfers.api.errors import error_body

    cool_off = get_cool_off(request)
    username = get_client_username(request, credentials) or ""
    if request.path.startswith("/api/"):
        wait = f"; try again in {cool_off}" if cool_off else ""
        body = error_body("locked_out", f"too many failed logins{f' as {username!r}' if username else ''}{wait}")
        return JsonResponse(body, status=settings.AXES_HTTP_RESPONSE_CODE)
    context = {"failure_limit": get_failure_limit(request, credentials), "username": username, "cooloff_timedelta": cool_off}
    return render(request, settings.AXES_LOCKOUT_TEMPLATE, context, status=settings.AXES_HTTP_RESPONSE_CODE)
