"""The API tokens page (/tokens/): any logged-in user makes a key for their scripts (shown once), lists
their own tokens and revokes them. Another user's token is a 404 here, whoever asks."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from transfers.api_tokens import api_token_create, api_token_revoke, api_tokens_for


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, initial="script", help_text="what the key is for, e.g. the pipeline host")


@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    key = ""
    if request.method == "POST" and form.is_valid():
        _, key = api_token_create(user=request.user, name=form.cleaned_data["name"], request=request)
        form = TokenForm()
    context = {"form": form, "key": key, "tokens": api_tokens_for(request.user)}
    response = render(request, "transfers/tokens.html", context, status=400 if form.errors else 200)
    response["Cache-Control"] = "no-store"  # the key is in this answer only
    return response


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(api_tokens_for(request.user), pk=pk)
    if api_token_revoke(token=token, request=request):
        messages.success(request, f"Token {token.prefix}… ({token.name}) is revoked: scripts using it are refused.")
    return redirect("tokens")
