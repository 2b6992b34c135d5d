"""Audit rows for rows changed outside the app's services: users, teams and team memberships; and logins.

Whoever changes them — the admin, the team pages (transfers.teams), `createsuperuser`, bootstrap, a
shell — these receivers write the one audit row, so a creation is never recorded twice. The admin and
transfers.teams wrap their changes in `audit_context`, which names the actor and the request; anywhere
else the actor is "system".

Logins, logouts and failed logins (form, admin, API Basic auth) are recorded from Django's auth
signals: a failed one with the username that was tried, never the password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest

from transfers import services
from transfers.models import Membership, Team

_context: ContextVar[tuple[Any, HttpRequest | None] | None] = ContextVar("rvweb_audit_context", default=None)


@contextmanager
def audit_context(*, actor: Any, request: HttpRequest | None) -> Iterator[None]:
    """Within this block, user and membership changes are recorded as made by `actor` during `request`."""
    token = _context.set((actor, request))
    try:
        yield
    finally:
        _context.reset(token)


def _record(action: str, target: Any, **values: Any) -> None:
    actor, request = _context.get() or (None, None)
    services.audit_record(actor=actor, action=action, target=target, request=request, **values)


def _user_facts(user: Any) -> dict[str, Any]:
    return {"username": user.get_username(), "is_staff": user.is_staff, "is_superuser": user.is_superuser}


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="rvweb-audit-user-create")
def user_created(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    # Changes are recorded where their meaning is known (the admin's change log); a plain save() also
    # happens at every login (last_login), which is no change worth an audit row.
    if created and not raw:
        _record("user.create", instance, after=_user_facts(instance))


@receiver(post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="rvweb-audit-user-delete")
def user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    _record("user.delete", instance, before=_user_facts(instance))


def _membership_facts(membership: Membership) -> dict[str, Any]:
    username = get_user_model().objects.filter(pk=membership.user_id).values_list("username", flat=True).first()
    return {"user": membership.user_id, "username": username, "team": membership.team_id, "role": membership.role}


@receiver(pre_save, sender=Team, dispatch_uid="rvweb-audit-team-before")
def team_before(sender: Any, instance: Team, raw: bool = False, **kwargs: Any) -> None:
    old = Team.objects.filter(pk=instance.pk).values("name").first() if instance.pk and not raw else None
    instance._audit_before = old  # type: ignore[attr-defined]


@receiver(post_save, sender=Team, dispatch_uid="rvweb-audit-team-save")
def team_saved(sender: Any, instance: Team, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if raw:
        return
    before = getattr(instance, "_audit_before", None)
    after = {"name": instance.name}
    if created or before != after:
        _record("team.create" if created else "team.change", instance, before=None if created else before, after=after)


@receiver(post_delete, sender=Team, dispatch_uid="rvweb-audit-team-delete")
def team_deleted(sender: Any, instance: Team, **kwargs: Any) -> None:
    _record("team.delete", instance, before={"name": instance.name})


@receiver(pre_save, sender=Membership, dispatch_uid="rvweb-audit-membership-before")
def membership_before(sender: Any, instance: Membership, raw: bool = False, **kwargs: Any) -> None:
    old = Membership.objects.filter(pk=instance.pk).first() if instance.pk and not raw else None
    instance._audit_before = _membership_facts(old) if old is not None else None  # type: ignore[attr-defined]


@receiver(post_save, sender=Membership, dispatch_uid="rvweb-audit-membership-save")
def membership_saved(sender: Any, instance: Membership, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if raw:
        return
    before = getattr(instance, "_audit_before", None)
    after = _membership_facts(instance)
    if created or before != after:
        action = "membership.create" if created else "membership.change"
        _record(action, instance, before=None if created else before, after=after)


@receiver(post_delete, sender=Membership, dispatch_uid="rvweb-audit-membership-delete")
def membership_deleted(sender: Any, instance: Membership, **kwargs: Any) -> None:
    _record("membership.delete", instance, before=_membership_facts(instance))


def _login_request(request: Any) -> HttpRequest | None:
    django_request = getattr(request, "_request", request)  # DRF's Basic auth hands its own request
    return django_request if isinstance(django_request, HttpRequest) else None


@receiver(user_logged_in, dispatch_uid="rvweb-audit-login")
def logged_in(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    services.audit_record(actor=user, action="auth.login", target=user, request=_login_request(request))


@receiver(user_logged_out, dispatch_uid="rvweb-audit-logout")
def logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    if user is not None:  # logging out without a session changes nothing
        services.audit_record(actor=user, action="auth.logout", target=user, request=_login_request(request))


@receiver(user_login_failed, dispatch_uid="rvweb-audit-login-failed")
def login_failed(sender: Any, credentials: dict[str, Any] | None = None, request: Any = None, **kwargs: Any) -> None:
    from rvweb.lockout import Login

    field = get_user_model().USERNAME_FIELD
    name = str((credentials or {}).get(field) or (credentials or {}).get("username") or "")[:60]
    account = get_user_model().objects.filter(**{field: name}).first() if name else None
    services.audit_record(
        actor=account,
        actor_name="anonymous",
        action="auth.login_failed",
        target=account if account is not None else Login(name),
        request=_login_request(request),
        after={"username": name},  # the credentials' other values (the password) never
        outcome="failed",
    )
