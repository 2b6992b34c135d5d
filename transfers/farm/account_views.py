"""Pages where a team's leads (and staff) add and edit farm accounts and test their connection.

Every account comes from transfers.selectors (another team's is a 404); a member or viewer may open the
list but not these pages (403). Saving and checking go through transfers.accounts.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from transfers import selectors
from transfers.accounts import AccountInvalid, account_check, account_save
from transfers.farm.base import CheckStep
from transfers.forms import AccountEditForm
from transfers.models import FarmAccount


def _managed(request: HttpRequest, account_id: int) -> FarmAccount:
    account = get_object_or_404(selectors.accounts_for(request.user), pk=account_id)
    if not selectors.user_may(request.user, "manage", account):
        raise PermissionDenied("editing a farm account needs the lead role in its team")
    return account


def _page(
    request: HttpRequest, form: AccountEditForm, account: FarmAccount | None, steps: list[CheckStep] | None = None
) -> HttpResponse:
    context = {
        "form": form,
        "account": account,
        "key_stored": bool(getattr(account, "key_stored", False)),
        "steps": steps,
        "failed": [step for step in steps or [] if not step.ok],
    }
    return render(request, "transfers/farm_account_form.html", context, status=400 if form.errors else 200)


def _save(request: HttpRequest, account: FarmAccount | None) -> HttpResponse:
    form = AccountEditForm(request.POST, user=request.user, account=account)
    if form.is_valid():
        data = form.data_for_save()
        if not form.errors:
            try:
                saved = account_save(
                    user=request.user,
                    data=data,
                    account=account,
                    key=form.cleaned_data["access_key"],
                    clear_key=form.cleaned_data["clear_key"],
                    request=request,
                )
            except AccountInvalid as exc:
                for field, message in exc.errors.items():
                    form.add_error(field if field in form.fields else None, message)
            else:
                messages.success(request, f"Farm account {saved.name} saved.")
                return redirect("farm-account-edit", account_id=saved.pk)
    return _page(request, form, account)


@login_required
def farm_account_new(request: HttpRequest) -> HttpResponse:
    if not selectors.teams_for(request.user, role="lead").exists():
        raise PermissionDenied("adding a farm account needs the lead role in a team")
    if request.method == "POST":
        return _save(request, None)
    return _page(request, AccountEditForm(user=request.user), None)


@login_required
def farm_account_edit(request: HttpRequest, account_id: int) -> HttpResponse:
    account = _managed(request, account_id)
    if request.method == "POST":
        return _save(request, account)
    return _page(request, AccountEditForm(user=request.user, account=account), account)


@login_required
@require_POST
def farm_account_check(request: HttpRequest, account_id: int) -> HttpResponse:
    """Test connection: the connector's own check, every step shown, the failed ones saying why."""
    account = _managed(request, account_id)
    steps = account_check(account=account, user=request.user, request=request)
    return _page(request, AccountEditForm(user=request.user, account=account), account, steps)
