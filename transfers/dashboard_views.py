"""The studio dashboard and its kiosk links: pages and their state as JSON (static/js/dashboard.js keeps them live).

/dashboard/                 everything the user may see (selectors.jobs_for); `?kiosk=1`: a wall screen
                            for a viewer login (no navigation, no kiosk links)
/dashboard/state.json       the same state again, for the script after a websocket reconnect
/dashboard/kiosks           POST: a lead makes a kiosk link for a team (shown once, on the answer)
/dashboard/kiosks/<id>/revoke  POST: a lead revokes one
/kiosk/#<token>             one team's dashboard for a signed kiosk link: no login, no controls, no links.
                            The token is in the fragment, which browsers never send: it is in no server
                            or proxy log; the script sends it as X-Kiosk-Token and on the websocket.
/kiosk/state.json           the kiosk's state, for the token in X-Kiosk-Token (404 when not valid)
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from transfers import kiosks, selectors
from transfers.dashboard import dashboard_state
from transfers.models import Team


class KioskForm(forms.Form):
    team = forms.ModelChoiceField(queryset=Team.objects.none(), empty_label=None)
    name = forms.CharField(max_length=100, label="Screen", help_text="Where it hangs, e.g. render room wall.")

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = selectors.teams_for(user, role="lead")  # type: ignore[attr-defined]


def _page(request: HttpRequest, *, form: KioskForm | None = None, new_link: str = "", status: int = 200) -> HttpResponse:
    user = request.user
    wall = request.GET.get("kiosk") == "1"
    form = form or KioskForm(user=user)
    context = {
        "state": dashboard_state(selectors.jobs_for(user), budgets=selectors.budgets_for(user)),
        "ws": "/ws/dashboard/",
        "state_url": "/dashboard/state.json",
        "wall": wall,
        "title": "Dashboard",
        # Only for a lead; a refused post shows its errors whoever sent it.
        "kiosk_form": form if not wall and (form.is_bound or form.fields["team"].queryset.exists()) else None,  # type: ignore[attr-defined]
        "kiosks": [] if wall else selectors.kiosks_for(user),
        "new_link": new_link,
    }
    return render(request, "transfers/dashboard.html", context, status=status)


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    return _page(request)


@never_cache
@require_GET
def dashboard_json(request: HttpRequest) -> JsonResponse:
    if not request.user.is_authenticated:
        return JsonResponse({"error": "signed out"}, status=401)  # the script asks the user to log in again
    return JsonResponse(dashboard_state(selectors.jobs_for(request.user), budgets=selectors.budgets_for(request.user)))


@login_required
@require_POST
def kiosk_create(request: HttpRequest) -> HttpResponse:
    form = KioskForm(request.POST, user=request.user)
    if not form.is_valid():
        return _page(request, form=form, status=400)
    try:
        data = form.cleaned_data
        kiosk, token = kiosks.kiosk_create(team=data["team"], name=data["name"], user=request.user, request=request)
    except PermissionDenied as exc:
        messages.error(request, str(exc))
        return redirect("dashboard")
    link = request.build_absolute_uri("/kiosk/") + f"#{token}"
    messages.success(request, f"Kiosk link for {kiosk.team} ({kiosk.name}) made. Copy it now: it is not shown again.")
    return _page(request, new_link=link)


@login_required
@require_POST
def kiosk_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    kiosk = get_object_or_404(selectors.kiosks_for(request.user), pk=pk)
    kiosks.kiosk_revoke(kiosk=kiosk, user=request.user, request=request)
    messages.success(request, f"Kiosk link {kiosk.name} of {kiosk.team} revoked: its screens go dark now.")
    return redirect("dashboard")


KIOSK_TOKEN_HEADER = "HTTP_X_KIOSK_TOKEN"  # noqa: S105 - the name of a header, not a secret


@never_cache
@require_GET
def kiosk_page(request: HttpRequest) -> HttpResponse:
    """The kiosk screen's page: its script reads the token from the fragment and fetches the state."""
    context = {
        "state": {"active": [], "failures": [], "bytes_today": 0},
        "ws": "/ws/kiosk/",
        "state_url": "/kiosk/state.json",
        "wall": True,
        "kiosk": True,
        "title": "Kiosk",
    }
    response = render(request, "transfers/dashboard.html", context)
    response["Referrer-Policy"] = "no-referrer"
    return response


@never_cache
@require_GET
def kiosk_json(request: HttpRequest) -> JsonResponse:
    kiosk = kiosks.kiosk_from_token(request.META.get(KIOSK_TOKEN_HEADER, ""))
    if kiosk is None:
        return JsonResponse({"error": "this kiosk link is not valid or was revoked"}, status=404)
    state = dashboard_state(selectors.jobs_of_kiosk(kiosk), links=False, budgets=selectors.budgets_of_team(kiosk.team_id))
    return JsonResponse({**state, "title": f"{kiosk.team} · {kiosk.name}"})
