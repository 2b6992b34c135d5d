"""A team's members, as its leads (and staff) manage them: add an existing user, change a role, remove one.

Each change is checked against the actor's role (selectors, "manage" on the team) and recorded by the
membership receivers of transfers.signals, with the actor and the request named (audit_context): one
audit row per change, with the role before and after. A team is never left without a lead by one of its
leads (staff may).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import HttpRequest

from transfers.models import Membership, Team
from transfers.services import User, _require
from transfers.signals import audit_context


class MemberRefused(ValueError):
    """The change cannot be made as asked (no such user, already a member, the last lead...): the message says why."""


def _role(role: str) -> str:
    if role not in Membership.Role.values:
        raise MemberRefused(f"role must be one of {', '.join(Membership.Role.values)}, not {role!r}")
    return role


def _keep_a_lead(membership: Membership, user: User, *, new_role: str | None) -> None:
    """Refuse a lead's change that leaves the team without a lead (staff may empty a team)."""
    if membership.role != Membership.Role.LEAD or new_role == Membership.Role.LEAD:
        return
    if user is not None and (user.is_staff or user.is_superuser):
        return
    others = Membership.objects.filter(team_id=membership.team_id, role=Membership.Role.LEAD).exclude(pk=membership.pk)
    if not others.exists():
        raise MemberRefused("a team keeps at least one lead: make another member lead first")


def team_member_add(*, team: Team, username: str, role: str, user: User, request: HttpRequest | None = None) -> Membership:
    """Add an existing user (by username) to the team with `role`."""
    _require(user, "manage", team)
    role = _role(role)
    person: Any = get_user_model().objects.filter(username=username.strip()).first()
    if person is None or not person.is_active:
        raise MemberRefused(f"no active user is called {username.strip()!r} (accounts are made by an admin)")
    with transaction.atomic(), audit_context(actor=user, request=request):
        if Membership.objects.filter(team=team, user=person).exists():
            raise MemberRefused(f"{person.get_username()} is already in {team.name}")
        return Membership.objects.create(team=team, user=person, role=role)


def team_member_set_role(*, membership: Membership, role: str, user: User, request: HttpRequest | None = None) -> bool:
    """Change a member's role; False when it already was that role (nothing recorded)."""
    _require(user, "manage", membership.team)
    role = _role(role)
    with transaction.atomic(), audit_context(actor=user, request=request):
        locked = Membership.objects.select_for_update().get(pk=membership.pk)
        if locked.role == role:
            return False
        _keep_a_lead(locked, user, new_role=role)
        locked.role = role
        locked.save(update_fields=["role"])
    membership.role = role
    return True


def team_member_remove(*, membership: Membership, user: User, request: HttpRequest | None = None) -> None:
    """Take a user out of the team (the user account stays)."""
    _require(user, "manage", membership.team)
    with transaction.atomic(), audit_context(actor=user, request=request):
        locked = Membership.objects.select_for_update().filter(pk=membership.pk).first()
        if locked is None:
            return  # removed meanwhile: nothing to do
        _keep_a_lead(locked, user, new_role=None)
        locked.delete()
