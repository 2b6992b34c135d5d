"""Filters of the API's lists (django-filter). They only narrow the querysets transfers.selectors gives; a
team or an account the user cannot see is refused like an unknown one (400, naming the parameter).

    /api/jobs/?team=&account=&kind=&status=&created_after=YYYY-MM-DD&created_before=YYYY-MM-DD
    /api/manifests/?account=&state=&name=<part of the name>
    /api/accounts/?team=&kind=

`kind` and `status` (and `state`) may repeat: `?status=running&status=paused`.
"""

from __future__ import annotations

from typing import Any

import django_filters as filters
from django.db.models import QuerySet

from transfers import selectors
from transfers.models import FarmAccount, Kiosk, Manifest, Team, TransferJob


def _teams(request: Any) -> QuerySet[Team]:
    return selectors.teams_for(getattr(request, "user", None))


def _accounts(request: Any) -> QuerySet[FarmAccount]:
    return selectors.accounts_for(getattr(request, "user", None))


class JobFilter(filters.FilterSet):
    team = filters.ModelChoiceFilter(field_name="account__team", queryset=_teams, help_text="a team's id")
    account = filters.ModelChoiceFilter(queryset=_accounts, help_text="a farm account's id")
    kind = filters.MultipleChoiceFilter(choices=TransferJob.Kind.choices, help_text="the SDK's name; may repeat")
    status = filters.MultipleChoiceFilter(choices=TransferJob.Status.choices, help_text="may repeat")
    created = filters.DateFromToRangeFilter(
        field_name="created_at", help_text="created_after, created_before: dates (YYYY-MM-DD), both days included"
    )

    class Meta:
        model = TransferJob
        fields = ["team", "account", "kind", "status", "created"]


class ManifestFilter(filters.FilterSet):
    account = filters.ModelChoiceFilter(queryset=_accounts, help_text="a farm account's id")
    state = filters.MultipleChoiceFilter(choices=Manifest.State.choices, help_text="may repeat")
    name = filters.CharFilter(lookup_expr="icontains", max_length=200, help_text="part of the name, any case")

    class Meta:
        model = Manifest
        fields = ["account", "state", "name"]


class FarmAccountFilter(filters.FilterSet):
    team = filters.ModelChoiceFilter(queryset=_teams, help_text="a team's id")
    kind = filters.MultipleChoiceFilter(choices=FarmAccount.Kind.choices, help_text="may repeat")

    class Meta:
        model = FarmAccount
        fields = ["team", "kind"]


class KioskFilter(filters.FilterSet):
    team = filters.ModelChoiceFilter(queryset=_teams, help_text="a team's id")
    revoked = filters.BooleanFilter(help_text="true: the revoked links only; false: the live ones")

    class Meta:
        model = Kiosk
        fields = ["team", "revoked"]
