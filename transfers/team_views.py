"""Team pages: /teams/ (the user's teams; staff: all) and /teams/<id>/ (its members). A lead (or staff)
adds an existing user, changes a role or removes a member (transfers.teams); members and viewers see the
list only; a team the user is not in is a 404."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from transfers import selectors, teams
from transfers.models import Membership, Team


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


def _team(request: HttpRequest, pk: int) -> Team:
    return get_object_or_404(selectors.teams_for(request.user), pk=pk)


@login_required
def team_list(request: HttpRequest) -> HttpResponse:
    visible = selectors.teams_for(request.user).annotate(member_count=Count("memberships"))
    roles = dict(Membership.objects.filter(user_id=request.user.pk).values_list("team_id", "role"))
    rows = [(team, roles.get(team.pk, "")) for team in visible]
    return render(request, "transfers/team_list.html", {"rows": rows})


@login_required
def team_detail(request: HttpRequest, pk: int) -> HttpResponse:
    team = _team(request, pk)
    context = {
        "team": team,
        "members": selectors.members_for(request.user, team),
        "may_manage": selectors.user_may(request.user, "manage", team),
        "add_form": MemberAddForm(),
        "roles": Membership.Role.choices,
    }
    return render(request, "transfers/team_detail.html", context)


def _done(request: HttpRequest, team: Team, act: object, success: str) -> HttpResponse:
    try:
        result = act() if callable(act) else None
    except (PermissionDenied, teams.MemberRefused) as exc:
        messages.error(request, str(exc))
    else:
        if result is not False:
            messages.success(request, success)
    return redirect("team-detail", pk=team.pk)


@login_required
@require_POST
def team_member_add(request: HttpRequest, pk: int) -> HttpResponse:
    team = _team(request, pk)
    form = MemberAddForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Add a member: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("team-detail", pk=team.pk)
    username, role = form.cleaned_data["username"], form.cleaned_data["role"]
    return _done(
        request,
        team,
        lambda: teams.team_member_add(team=team, username=username, role=role, user=request.user, request=request),
        f"{username} added to {team.name} as {role}.",
    )


@login_required
@require_POST
def team_member_role(request: HttpRequest, pk: int, member: int) -> HttpResponse:
    team = _team(request, pk)
    membership = get_object_or_404(selectors.members_for(request.user, team), pk=member)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role: lead, member or viewer.")
        return redirect("team-detail", pk=team.pk)
    role = form.cleaned_data["role"]
    return _done(
        request,
        team,
        lambda: teams.team_member_set_role(membership=membership, role=role, user=request.user, request=request),
        f"{membership.user.get_username()} is now {role} in {team.name}.",
    )


@login_required
@require_POST
def team_member_remove(request: HttpRequest, pk: int, member: int) -> HttpResponse:
    team = _team(request, pk)
    membership = get_object_or_404(selectors.members_for(request.user, team), pk=member)
    return _done(
        request,
        team,
        lambda: teams.team_member_remove(membership=membership, user=request.user, request=request),
        f"{membership.user.get_username()} removed from {team.name}.",
    )
