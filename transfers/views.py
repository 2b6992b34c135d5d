"""Server-rendered pages. Each live page renders the database state first; its JS module streams deltas.

Every object and list comes from transfers.selectors: what a user may not see is a 404; an action their
role does not allow on what they may see is an error message (the services refuse it).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from transfers import job_filters, kinds, manifest_browse, manifest_store, manifest_work, samples, selectors, services
from transfers.forms import EntryFilterForm, ManifestImportForm, SpeedForm, SplitForm, UploadOptionsForm
from transfers.models import Manifest, TransferJob

_WORKS_SHOWN = 10


@login_required
def manifest_list(request: HttpRequest) -> HttpResponse:
    form = ManifestImportForm(request.POST or None, request.FILES or None, user=request.user)
    problems: list[str] = []
    if request.method == "POST" and not form.may_import():
        problems = ["you may not import manifests: that needs the lead role in a team that owns a farm account"]
    elif request.method == "POST" and form.is_valid():
        try:
            manifest = _import(request, form)
        except (PermissionDenied, manifest_work.WorkRefused) as exc:
            problems = [str(exc)]
        else:
            return redirect("manifest-detail", pk=manifest.pk)
    manifests = selectors.manifests_for(request.user)[:100]
    context = {
        "manifests": manifests,
        "form": form,
        "problems": problems,
        "may_import": form.may_import(),
        "accounts": selectors.accounts_for(request.user, action="manage"),
    }
    return render(request, "transfers/manifest_list.html", context)


def _import(request: HttpRequest, form: ManifestImportForm) -> Manifest:
    """A worker reads and checks the file; its page shows the progress, then the entries or the problems."""
    data = form.cleaned_data
    if data.get("server_path"):
        return manifest_work.manifest_import_server_file(
            name=data["name"],
            account=data["account"],
            path=data["server_path"],
            user=request.user,
            request=request,
            transmit_type=data["transmit_type"],
        )
    return services.manifest_import_begin(
        name=data["name"],
        account=data["account"],
        chunks=data["file"].chunks(),
        spooled=getattr(data["file"], "temporary_file_path", lambda: None)(),
        user=request.user,
        request=request,
        transmit_type=data["transmit_type"],
    )


@login_required
def manifest_detail(request: HttpRequest, pk: int) -> HttpResponse:
    manifest = get_object_or_404(selectors.manifests_for(request.user), pk=pk)
    ready = manifest.state == Manifest.State.READY
    filters = EntryFilterForm(request.GET)
    page = None
    if ready and filters.is_valid():
        entries = manifest_browse.filtered(selectors.manifest_entries_for(request.user, manifest), manifest, filters.cleaned_data)
        page = manifest_browse.page(
            entries,
            last=manifest.entry_count,
            after=filters.cleaned_data.get("after"),
            before=filters.cleaned_data.get("before"),
            window=manifest_browse.WINDOW if filters.filtering() else None,
        )
    kept = request.GET.copy()
    for cursor in ("after", "before"):
        kept.pop(cursor, None)
    problems = [str(problem) for problem in manifest_store.problems_loaded(manifest.problems)]
    context = {
        "manifest": manifest,
        "page": page,
        "filters": filters,
        "query": kept.urlencode(),
        "options": UploadOptionsForm(),
        "may_run": selectors.user_may(request.user, "run", manifest),  # templates hide what the role cannot do
        "may_manage": selectors.user_may(request.user, "manage", manifest),
        "split": SplitForm(),
        "works": selectors.manifest_works_for(request.user, manifest)[:_WORKS_SHOWN],
        "parts": selectors.manifests_for(request.user).filter(split_from=manifest).order_by("pk"),
        "problems": problems,
    }
    return render(request, "transfers/manifest_detail.html", context)


@login_required
@require_POST
def manifest_split(request: HttpRequest, pk: int) -> HttpResponse:
    manifest = get_object_or_404(selectors.manifests_for(request.user), pk=pk)
    form = SplitForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Split: " + "; ".join(" ".join(v) for v in form.errors.values()))
        return redirect("manifest-detail", pk=manifest.pk)
    try:
        manifest_work.manifest_split_begin(
            manifest=manifest, max_resources_number=form.cleaned_data["max_resources_number"], user=request.user, request=request
        )
    except (PermissionDenied, manifest_work.WorkRefused) as exc:
        messages.error(request, f"Split: {exc}")
    else:
        messages.success(request, "Splitting: a worker makes the parts; they are listed below as they are made.")
    return redirect("manifest-detail", pk=manifest.pk)


@login_required
@require_POST
def manifest_dry_run(request: HttpRequest, pk: int) -> HttpResponse:
    manifest = get_object_or_404(selectors.manifests_for(request.user), pk=pk)
    try:
        manifest_work.manifest_dry_run_begin(manifest=manifest, user=request.user, request=request)
    except (PermissionDenied, manifest_work.WorkRefused) as exc:
        messages.error(request, f"Dry run: {exc}")
    else:
        messages.success(request, "Dry run started: a worker looks at every file; the result appears below.")
    return redirect("manifest-detail", pk=manifest.pk)


@login_required
@require_POST
def manifest_upload(request: HttpRequest, pk: int) -> HttpResponse:
    manifest = get_object_or_404(selectors.manifests_for(request.user), pk=pk)
    form = UploadOptionsForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Upload options: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("manifest-detail", pk=manifest.pk)
    try:
        job = services.job_create_upload(manifest=manifest, user=request.user, request=request, options=form.options())
    except (services.UnsupportedAccount, services.ManifestNotReady, kinds.OptionsInvalid, PermissionDenied) as exc:
        messages.error(request, str(exc))
        return redirect("manifest-detail", pk=manifest.pk)
    return redirect("job-detail", pk=job.pk)


@login_required
@require_POST
def job_speed(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(selectors.jobs_for(request.user), pk=pk)
    form = SpeedForm(request.POST)
    if not form.is_valid() or job.is_terminal:
        messages.error(request, "The speed limit must be a whole number of KB/s, on a job that is still running.")
        return redirect("job-detail", pk=job.pk)
    try:
        services.job_set_max_speed(job=job, max_speed=form.cleaned_data["max_speed"], user=request.user, request=request)
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        limit = form.cleaned_data["max_speed"]
        messages.success(request, f"Speed limit set to {limit} KB/s." if limit else "Speed limit removed.")
    return redirect("job-detail", pk=job.pk)


JOB_ACTIONS = {
    "pause": (services.job_pause, "Pausing: the worker stops within a second; partial files are kept."),
    "resume": (services.job_resume, "Resumed: the job is queued again and continues where it stopped."),
    "cancel": (services.job_cancel, "Cancelled: files already sent stay; partial files are removed."),
    "retry": (services.job_retry, "Retrying the failed files and the ones not sent."),
}  # which of them a job allows is the model's rule: TransferJob.actions


@login_required
@require_POST
def job_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    job = get_object_or_404(selectors.jobs_for(request.user), pk=pk)
    if action not in JOB_ACTIONS:
        raise Http404("no such action")
    act, done = JOB_ACTIONS[action]
    status = job.label.lower()  # as the user saw it when pressing; the service decides on the row itself
    try:
        acted = act(job=job, user=request.user, request=request)
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        if acted:
            messages.success(request, done)
        else:
            messages.error(request, f"Cannot {action} a job that is {status}.")
    return redirect("job-detail", pk=job.pk)


@login_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(selectors.jobs_for(request.user), pk=pk)
    speed = SpeedForm(initial={"max_speed": job.options.get("max_speed")})
    context = {
        "job": job,
        "live": job.as_live(),
        "can_control": selectors.user_may(request.user, "control", job),  # only the actions the user may take
        "action_labels": _ACTION_LABELS,
        "speed": speed,
        "samples": samples.samples_of(job.pk),  # the speed chart's history; job.js extends it live
        "item_filters": job_filters.items_filter_choices(),
        "where": _where(job),
    }
    return render(request, "transfers/job_detail.html", context)


def _where(job: TransferJob) -> str:
    """What the job moves, from where to where, in words (its kind knows)."""
    try:
        kind = kinds.get(job.kind)
        return kind.describe(kind.options(job), account=job.account.name)
    except (kinds.UnknownKind, kinds.OptionsInvalid) as exc:
        return f"— ({exc})"


_ACTION_LABELS = [
    ("pause", "Pause", ""),
    ("resume", "Resume", "primary"),
    ("cancel", "Cancel", "danger"),
    ("retry", "Retry", "primary"),
]  # every action's form is on the page; the script shows those the job's `actions` allow
