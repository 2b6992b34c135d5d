"""The audit page (/audit/) and its CSV export: staff only (anyone else gets a 404), read-only."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from transfers import audit, selectors


def _form(request: HttpRequest) -> audit.AuditFilterForm:
    if not selectors.may_audit(request.user):
        raise Http404("no such page")
    return audit.AuditFilterForm(request.GET, teams=selectors.teams_for(request.user))


def _team_names(request: HttpRequest) -> dict[int, str]:
    return dict(selectors.teams_for(request.user).values_list("pk", "name"))


@login_required
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    form = _form(request)
    context: dict[str, object] = {
        "form": form,
        "actions": audit.KNOWN_ACTIONS,
        "targets": audit.KNOWN_TARGETS,
        "outcomes": audit.KNOWN_OUTCOMES,
    }
    if not form.is_valid():
        return render(request, "transfers/audit.html", context, status=400)
    events = audit.filtered(selectors.audit_events_for(request.user), form)
    page = audit.page_of(events, before=form.cleaned_data["before"], after=form.cleaned_data["after"], size=audit.PAGE_SIZE)
    teams = _team_names(request)
    context |= {
        "page": page,
        "rows": [(event, teams.get(event.team_id or 0, ""), audit.diff(event)) for event in page.rows],
        "query": urlencode(form.filters()),
    }
    return render(request, "transfers/audit.html", context)


@login_required
@require_GET
def audit_export(request: HttpRequest) -> HttpResponse:
    form = _form(request)
    if not form.is_valid():
        return HttpResponse(
            "Bad filter: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()),
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    events = audit.filtered(selectors.audit_events_for(request.user), form)
    response = StreamingHttpResponse(audit.csv_stream(events, _team_names(request)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{audit.export_name()}"'
    response["Cache-Control"] = "no-store"
    return response
