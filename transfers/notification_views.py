"""The user's own notification settings page, with the log of their deliveries (never another user's)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from transfers import selectors
from transfers.forms import NotificationSettingsForm
from transfers.notifications import SettingsInvalid, settings_of, settings_save

_SHOWN = 50


@login_required
def notification_settings(request: HttpRequest) -> HttpResponse:
    current = settings_of(request.user)
    secret = ""
    if request.method == "POST":
        form = NotificationSettingsForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                secret = settings_save(
                    user=request.user,
                    email=data["email"],
                    webhook_url=data["webhook_url"],
                    events=data["events"],
                    new_secret=data["new_secret"],
                    request=request,
                )
            except SettingsInvalid as exc:
                for field, message in exc.errors.items():
                    form.add_error(field if field in form.fields else None, message)
            else:
                if not secret:
                    messages.success(request, "Notification settings saved.")
                    return redirect("notification-settings")
                current.refresh_from_db()
                form = NotificationSettingsForm(initial=_initial(current))
    else:
        form = NotificationSettingsForm(initial=_initial(current))
    context = {
        "form": form,
        "secret": secret,  # only in the answer that made it
        "secret_set": bool(current.webhook_url) and current.webhook_secret != "",
        "deliveries": selectors.notification_deliveries_for(request.user)[:_SHOWN],
    }
    response = render(request, "transfers/notification_settings.html", context, status=400 if form.errors else 200)
    if secret:
        response["Cache-Control"] = "no-store"
    return response


def _initial(current: object) -> dict[str, object]:
    return {
        "email": getattr(current, "email", False),
        "webhook_url": getattr(current, "webhook_url", ""),
        "events": getattr(current, "events", []),
    }
