"""The signed-in user's own notifications in the API (nobody sees another user's, staff neither):

    GET, PUT /api/notifications/            email on/off, webhook_url, events (PUT: all three)
    POST     /api/notifications/secret/     a new webhook secret, in this answer only (the old one stops working)
    GET      /api/notifications/deliveries/ the log of their deliveries, newest first (pages)

Checked as on the settings page (transfers.notifications.settings_save: http/https only, no user name or
password in the URL). The webhook secret is never returned by GET; a PUT that sets a first webhook makes
one (as the page does) and returns it in that answer only, as `webhook_secret`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from transfers import selectors
from transfers.api.errors import Invalid
from transfers.models import NotificationDelivery, NotificationSettings
from transfers.notifications import SettingsInvalid, settings_of, settings_save

Event = NotificationSettings.Event


class NotificationSettingsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    email = serializers.BooleanField(help_text="an email to your user's address (it must have one)")
    webhook_url = serializers.CharField(
        max_length=500, allow_blank=True, trim_whitespace=True, help_text="http:// or https://, no credentials; empty: none"
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.choices), max_length=len(Event.choices), help_text="when to tell you"
    )
    secret_set = serializers.BooleanField(read_only=True, help_text="whether the webhook has a secret (never shown here)")
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)


class NotificationSavedSerializer(NotificationSettingsSerializer):
    webhook_secret = serializers.CharField(  # an answer's field only (this serializer is never read)
        required=False, help_text="only when this answer made one (a first webhook): shown once"
    )


class WebhookSecretSerializer(serializers.Serializer):  # type: ignore[type-arg]
    webhook_secret = serializers.CharField(help_text="the key of X-Rvweb-Signature's HMAC-SHA256: shown this once")


class DeliverySerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    job = serializers.IntegerField(source="job_id", read_only=True, allow_null=True)

    class Meta:
        model = NotificationDelivery
        fields = ["id", "channel", "event", "job", "task_id", "attempt", "status", "error", "created_at"]
        read_only_fields = fields


def _shown(row: NotificationSettings) -> dict[str, Any]:
    return {
        "email": row.email,
        "webhook_url": row.webhook_url,
        "events": list(row.events),
        "secret_set": bool(row.webhook_url) and row.webhook_secret != "",
        "updated_at": row.updated_at,
    }


def _no_store(response: Response) -> Response:
    response["Cache-Control"] = "no-store"
    return response


class NotificationSettingsView(APIView):
    """Your own notification settings."""

    @extend_schema(operation_id="notifications_retrieve", responses=NotificationSettingsSerializer)
    def get(self, request: Request) -> Response:
        return Response(NotificationSettingsSerializer(_shown(settings_of(request.user))).data)

    @extend_schema(
        operation_id="notifications_update", request=NotificationSettingsSerializer, responses=NotificationSavedSerializer
    )
    def put(self, request: Request) -> Response:
        form = NotificationSettingsSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            secret = settings_save(
                user=request.user,  # type: ignore[arg-type]
                email=data["email"],
                webhook_url=data["webhook_url"],
                events=list(data["events"]),
                request=request._request,
            )
        except SettingsInvalid as exc:
            raise ValidationError(exc.errors) from None
        body = NotificationSettingsSerializer(_shown(settings_of(request.user))).data
        if secret:
            body["webhook_secret"] = secret
        return _no_store(Response(body))


class WebhookSecretView(APIView):
    """A new webhook secret for your webhook (the old one stops working): in this answer only."""

    @extend_schema(
        operation_id="notifications_secret_create",
        request=None,
        responses=WebhookSecretSerializer,
    )
    def post(self, request: Request) -> Response:
        row = settings_of(request.user)
        if not row.webhook_url:
            raise Invalid("set a webhook_url first: a secret signs its requests")
        try:
            secret = settings_save(
                user=request.user,  # type: ignore[arg-type]
                email=row.email,
                webhook_url=row.webhook_url,
                events=list(row.events),
                new_secret=True,
                request=request._request,
            )
        except SettingsInvalid as exc:
            raise ValidationError(exc.errors) from None
        return _no_store(Response({"webhook_secret": secret}))


class DeliveryList(generics.ListAPIView):  # type: ignore[type-arg]
    """Your own notification attempts, newest first: a row per attempt."""

    serializer_class = DeliverySerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> Any:
        return selectors.notification_deliveries_for(self.request.user)
