"""The job group page (/groups/<id>/): a thread_pool_upload's aggregate progress, its jobs and its one control."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from transfers import groups, kinds, selectors, services


@login_required
def group_detail(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(selectors.groups_for(request.user), pk=pk)
    jobs = list(group.jobs.select_related("manifest").order_by("pk"))
    statuses = [job.status for job in jobs]
    status = groups.group_status(statuses, held=group.held)
    total, done = group.bytes_total or 0, group.bytes_done or 0  # type: ignore[attr-defined]
    terminal = not set(statuses) & {"queued", "running", "paused"}
    context = {
        "group": group,
        "jobs": jobs,
        "status": status,
        "terminal": terminal,
        "percent": min(100, done * 100 // total) if total else (100 if terminal else 0),
        "running": statuses.count("running"),
        "actions": groups.group_actions(statuses, held=group.held),
        "can_control": selectors.user_may(request.user, "control", group),
    }
    return render(request, "transfers/group_detail.html", context)


@login_required
@require_POST
def group_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    group = get_object_or_404(selectors.groups_for(request.user), pk=pk)
    if action not in groups.ACTIONS:
        raise Http404("no such action")
    statuses = list(group.jobs.values_list("status", flat=True))
    if action not in groups.group_actions(statuses, held=group.held):
        messages.error(request, f"Cannot {action} a group that is {groups.group_status(statuses, held=group.held)}.")
        return redirect("group-detail", pk=group.pk)
    try:
        changed = groups.group_act(group=group, action=action, user=request.user, request=request)  # type: ignore[arg-type]
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{action.capitalize()}: {changed} of the group's jobs.")
    return redirect("group-detail", pk=group.pk)


@login_required
@require_POST
def group_from_parts(request: HttpRequest, pk: int) -> HttpResponse:
    """thread_pool_upload in the browser: a split manifest's parts uploaded in parallel as one group."""
    manifest = get_object_or_404(selectors.manifests_for(request.user), pk=pk)
    parts = list(selectors.manifests_for(request.user).filter(split_from=manifest).order_by("pk"))
    if not parts:
        messages.error(request, "This manifest has no parts yet: split it first.")
        return redirect("manifest-detail", pk=manifest.pk)
    speed, pool_size = request.POST.get("max_speed", "").strip(), request.POST.get("pool_size", "").strip()
    options = {"max_speed": int(speed) if speed.isdigit() else speed} if speed else {}
    refusals = (
        PermissionDenied,
        groups.GroupInvalid,
        kinds.OptionsInvalid,
        services.ManifestNotReady,
        services.UnsupportedAccount,
    )
    try:
        group = groups.group_create(
            manifests=parts,
            pool_size=int(pool_size) if pool_size.isdigit() else pool_size or 10,
            options=options,
            user=request.user,
            request=request,
        )
    except refusals as exc:
        messages.error(request, f"Not started: {exc}")
        return redirect("manifest-detail", pk=manifest.pk)
    messages.success(request, f"Uploading {len(parts)} parts, at most {group.pool_size} at once.")
    return redirect("group-detail", pk=group.pk)
