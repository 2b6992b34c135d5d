"""Pages of the farm: the accounts, the tasks of one account (status, frames done / expected), and for its
leads the "Simulate a render" button and the events token. Every row comes from transfers.selectors."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.validators import RegexValidator
from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from transfers import selectors
from transfers.farm import FarmError, FarmTaskInfo, UnsupportedAccount, connector_for, task_rows
from transfers.farm_events import Actor, EventInvalid, farm_token_generate, farm_token_revoke
from transfers.forms import DownloadForm
from transfers.kinds import OptionsInvalid
from transfers.models import FarmAccount, FarmEventToken

MAX_RENDER_SECONDS = 600


class SimulateForm(forms.Form):
    scene = forms.CharField(
        initial="shot_010", max_length=60, validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", "letters, digits, . _ -")]
    )
    frames = forms.IntegerField(initial=50, min_value=1, max_value=1000)
    children = forms.IntegerField(initial=0, min_value=0, max_value=8, label="Layers (child tasks)")
    interval = forms.FloatField(initial=0.2, min_value=0.0, max_value=5.0, label="Seconds per frame")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("frames") and data.get("interval") and data["frames"] * data["interval"] > MAX_RENDER_SECONDS:
            # the render holds a worker slot for its whole length: keep a demo from starving uploads
            raise forms.ValidationError(
                f"a simulated render lasts at most {MAX_RENDER_SECONDS // 60} minutes (frames times seconds per frame)"
            )
        return data


def _actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user, request_id=getattr(request, "request_id", ""), remote_addr=request.META.get("REMOTE_ADDR"))


@login_required
def farm_account_list(request: HttpRequest) -> HttpResponse:
    accounts = selectors.accounts_for(request.user).annotate(task_count=Count("farm_tasks"))
    context = {
        "accounts": accounts,
        "managed": set(selectors.accounts_for(request.user, action="manage").values_list("pk", flat=True)),
        "may_add": selectors.teams_for(request.user, role="lead").exists(),
    }
    return render(request, "transfers/farm_accounts.html", context)


def _tasks(account: FarmAccount) -> tuple[list[FarmTaskInfo], str]:
    """The account's tasks as its farm reports them (the account came from the selectors), or why not."""
    try:
        return connector_for(account).for_page().tasks(), ""
    except (UnsupportedAccount, FarmError) as exc:
        return [], str(exc)


def _page(
    request: HttpRequest,
    account: FarmAccount,
    *,
    token: str = "",
    form: SimulateForm | None = None,
    download: DownloadForm | None = None,
) -> HttpResponse:
    may_manage = selectors.user_may(request.user, "manage", account)
    tasks, problem = _tasks(account)
    rows = task_rows.task_rows(tasks)
    labels = task_rows.labels(tasks)
    takes_events = False
    try:
        connector = connector_for(account).for_page()
        takes_events, unsupported = connector.takes_events, ""
        lines = [] if problem else connector.lines()  # a farm that did not answer is not asked again
    except UnsupportedAccount as exc:
        lines, unsupported = [], str(exc)
    except FarmError as exc:
        lines, problem = [], problem or str(exc)
    context = {
        "account": account,
        "rows": rows,
        "may_run": selectors.user_may(request.user, "run", account),
        "download": download or DownloadForm(task_ids=list(labels), labels=labels),
        "problem": problem,
        "takes_events": takes_events,  # the local farm's: simulate a render, post events with a token
        "lines": lines,
        "unsupported": unsupported,
        "may_manage": may_manage,
        "form": form or SimulateForm(),
        "token": token,  # only in the answer to the lead who just made it
        "token_exists": FarmEventToken.objects.filter(account=account).exists(),
    }
    response = render(request, "transfers/farm_tasks.html", context)
    if token:
        response["Cache-Control"] = "no-store"
    return response


@login_required
def farm_tasks(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(selectors.accounts_for(request.user), pk=account_id)
    return _page(request, account)


@login_required
@require_POST
def farm_simulate(request: HttpRequest, account_id: int) -> HttpResponse:
    """Start a simulated render: its tasks now, its frames from the worker, one every `interval` seconds."""
    from transfers.farm.simulate import render_start
    from transfers.farm.tasks import simulate_render

    account = get_object_or_404(selectors.accounts_for(request.user), pk=account_id)
    if not selectors.user_may(request.user, "manage", account):
        messages.error(request, "you may not simulate a render on this account (that needs the lead role in its team)")
        return redirect("farm-tasks", account_id=account.pk)
    form = SimulateForm(request.POST)
    if not form.is_valid():
        return _page(request, account, form=form)
    data = form.cleaned_data
    try:
        with transaction.atomic():
            plan = render_start(
                account=account,
                scene=data["scene"],
                frames=data["frames"],
                children=data["children"],
                actor=_actor(request),
                interval=data["interval"],
            )
            request_id = getattr(request, "request_id", "")
            transaction.on_commit(
                lambda: simulate_render.delay(plan.account_id, plan.task_id, plan.frames, plan.interval, request_id)
            )
    except (EventInvalid, UnsupportedAccount) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"Task {plan.task_id} created: its frames appear in the output area as the worker renders them."
        )
    return redirect("farm-tasks", account_id=account.pk)


@login_required
@require_POST
def farm_download(request: HttpRequest, account_id: int) -> HttpResponse:
    """Start a download, an auto download or an auto download after completion of the chosen tasks."""
    from transfers.jobs import job_create

    account = get_object_or_404(selectors.accounts_for(request.user), pk=account_id)
    labels = task_rows.labels(_tasks(account)[0])
    form = DownloadForm(request.POST, task_ids=list(labels), labels=labels)
    if not form.is_valid():
        return _page(request, account, download=form)
    try:
        job = job_create(
            kind=form.cleaned_data["kind"], account=account, user=request.user, options=form.options(), request=request
        )
    except (OptionsInvalid, UnsupportedAccount, PermissionDenied) as exc:
        messages.error(request, str(exc))
        return _page(request, account, download=form)
    return redirect("job-detail", pk=job.pk)


@login_required
@require_POST
def farm_token(request: HttpRequest, account_id: int) -> HttpResponse:
    """Make a new events token (the old one stops working) and show it on this answer only."""
    account = get_object_or_404(selectors.accounts_for(request.user), pk=account_id)
    try:
        token = farm_token_generate(account=account, actor=_actor(request))
    except PermissionDenied as exc:
        messages.error(request, str(exc))
        return redirect("farm-tasks", account_id=account.pk)
    return _page(request, account, token=token)


@login_required
@require_POST
def farm_token_revoke_view(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(selectors.accounts_for(request.user), pk=account_id)
    try:
        revoked = farm_token_revoke(account=account, actor=_actor(request))
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Events token revoked." if revoked else "This account had no events token.")
    return redirect("farm-tasks", account_id=account.pk)
