"""The transfers list (live, filtered, paged), the form that starts a job of any kind, and the job
page's per-file table. Thin: the filters are transfers.job_filters, the form transfers.job_form, the
start transfers.jobs.job_create; every queryset comes from transfers.selectors.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET

from transfers import job_filters, kinds, selectors, services
from transfers.job_form import JobForm
from transfers.jobs import job_create


def _may_start(user: object) -> bool:
    """Members and leads start jobs (in their teams); viewers are not offered the form."""
    return selectors.teams_for(user, role="member").exists()


@login_required
@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    """The jobs the user may see, newest first, filtered; `?rows=1` answers only the table's rows, which
    static/js/job_list.js fetches every ~2 s to keep status, progress and speed current."""
    chosen = job_filters.job_filter_read(request.GET, user=request.user)
    jobs, older = job_filters.job_list_page(request.user, chosen)
    context = {"jobs": jobs, "rows": job_filters.job_rows(jobs), "filter": chosen, "older": older}
    if request.GET.get("rows"):
        return render(request, "transfers/_job_rows.html", context)
    context["may_start"] = _may_start(request.user)
    return render(request, "transfers/job_list.html", context)


@login_required
def job_new(request: HttpRequest) -> HttpResponse:
    """One form for every job kind; GET `?kind=` picks the kind whose options it shows."""
    if not _may_start(request.user):
        return render(request, "transfers/job_new.html", {"form": None}, status=403)
    form = JobForm(request.POST if request.method == "POST" else None, user=request.user, kind=request.GET.get("kind"))
    if request.method == "POST" and form.is_valid():
        options = form.raw_options()
        if form.is_valid():  # raw_options adds the errors of text that is not of its option's type
            data = form.cleaned_data
            try:
                job = job_create(
                    kind=form.job_kind.name,
                    account=data["manifest"].account if "manifest" in data else data["account"],
                    manifest=data.get("manifest"),
                    options=options,
                    user=request.user,
                    request=request,
                )
            except kinds.OptionsInvalid as exc:
                form.refused(exc)
            except (services.UnsupportedAccount, services.ManifestNotReady, PermissionDenied) as exc:
                form.add_error(None, str(exc))
            else:
                return redirect("job-detail", pk=job.pk)
    return render(request, "transfers/job_new.html", {"form": form})


@login_required
@require_GET
def job_items(request: HttpRequest, pk: int) -> JsonResponse:
    """A page of the job's files as JSON (job_filters.ItemPage): `state`, `after`, `q`."""
    job = get_object_or_404(selectors.jobs_for(request.user), pk=pk)
    try:
        page = job_filters.job_items_page(job, request.GET)
    except job_filters.ItemsInvalid as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(page)
