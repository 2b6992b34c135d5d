"""Kiosk links in the API, for the leads of their team (staff: all); see transfers.kiosks:

    GET  /api/kiosks/               the links of the teams you lead (?team=, ?revoked=)
    POST /api/kiosks/               {"team", "name"}: a new link; its `link` and `token` are in this answer only
    GET  /api/kiosks/<id>/
    POST /api/kiosks/<id>/revoke/   its screens go dark at once

A team you cannot see is refused like an unknown one (400); one you see but do not lead is a 403. A link
of another team is a 404.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from transfers import kiosks, selectors
from transfers.api.filters import KioskFilter
from transfers.models import Kiosk


class KioskSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    team_name = serializers.CharField(source="team.name", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Kiosk
        fields = ["id", "team", "team_name", "name", "revoked", "created_by", "created_at", "revoked_at"]
        read_only_fields = fields


@extend_schema_field(OpenApiTypes.INT)
class _YourTeam(serializers.PrimaryKeyRelatedField):  # type: ignore[type-arg]
    """A team the requesting user sees (selectors.teams_for); any other is refused like an unknown one."""

    def get_queryset(self) -> Any:
        request = self.context.get("request")
        return selectors.teams_for(getattr(request, "user", None))


class KioskCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    team = _YourTeam(help_text="a team you lead")
    name = serializers.CharField(max_length=100, help_text="where the screen hangs: render room wall")


class KioskMadeSerializer(KioskSerializer):
    link = serializers.CharField(read_only=True, help_text="the screen's URL, its token in the fragment: shown this once")
    token = serializers.CharField(read_only=True, help_text="the link's token (X-Kiosk-Token): shown this once")

    class Meta(KioskSerializer.Meta):
        fields = [*KioskSerializer.Meta.fields, "link", "token"]
        read_only_fields = fields


class KioskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    serializer_class = KioskSerializer
    filterset_class = KioskFilter
    lookup_value_regex = "[0-9]{1,18}"

    def get_queryset(self) -> Any:
        return selectors.kiosks_for(self.request.user).order_by("-created_at", "-pk")

    @extend_schema(request=KioskCreateSerializer, responses={201: KioskMadeSerializer})
    def create(self, request: Request) -> Response:
        form = KioskCreateSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        kiosk, token = kiosks.kiosk_create(
            team=form.validated_data["team"], name=form.validated_data["name"], user=request.user, request=request._request
        )
        body = KioskSerializer(selectors.kiosks_for(request.user).get(pk=kiosk.pk)).data
        body |= {"link": request.build_absolute_uri("/kiosk/") + f"#{token}", "token": token}
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(request=None, responses=KioskSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        kiosk = self.get_object()
        kiosks.kiosk_revoke(kiosk=kiosk, user=request.user, request=request._request)
        kiosk.refresh_from_db()
        return Response(KioskSerializer(kiosk).data)
