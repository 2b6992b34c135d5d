"""The budgets page (/budgets/): every shared bandwidth budget the user may see, and a form to set one
live — the studio's for staff, an account's or a line's for the account's leads (transfers.budget)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from transfers import budget, selectors
from transfers.models import BandwidthBudget


class BudgetForm(forms.Form):
    scope = forms.ChoiceField(choices=BandwidthBudget.Scope.choices)
    account = forms.ModelChoiceField(
        queryset=selectors.accounts_for(None), required=False, help_text="for an account or line budget"
    )
    line = forms.CharField(required=False, max_length=60, help_text="for a line budget: the line's name (the job page shows it)")
    max_speed = forms.IntegerField(
        required=False, min_value=0, max_value=2**31 - 1, label="max_speed (KB/s)", help_text="0 or empty: remove the budget"
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["account"].queryset = selectors.accounts_for(user, action="manage")  # type: ignore[attr-defined]


@login_required
def budgets_page(request: HttpRequest) -> HttpResponse:
    form = BudgetForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            made = budget.budget_set(
                user=request.user,
                scope=data["scope"],
                account=data["account"],
                line=data["line"] or "",
                max_speed=data["max_speed"],
                request=request,
            )
        except budget.BudgetInvalid as exc:
            form.add_error(None, str(exc))
        except PermissionDenied as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Budget set: {made}." if made is not None else "Budget removed.")
            return redirect("budgets")
    context = {"budgets": selectors.budgets_for(request.user), "form": form}
    return render(request, "transfers/budgets.html", context, status=400 if form.errors else 200)
