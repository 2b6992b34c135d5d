"""The audit trail in the API, read-only and for staff (anyone else gets a 404, like the page):

    /api/audit/?actor=&team=&action=&target_type=&target_id=&outcome=&request_id=&since=&until=
    /api/audit/<id>/

The filters are the audit page's (transfers.audit.AuditFilterForm: `action` exact, or a family ending in
"."), and so are its pages: keyset by id, newest first, never OFFSET, so the 20,000th page costs what the
first does. `next` (older rows, `?before=<id>`) and `previous` (newer rows, `?after=<id>`) are the links to
follow; `page_size` is 50 by default, up to 500.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from transfers import audit as trail
from transfers import selectors
from transfers.api.views import _form_invalid
from transfers.models import AuditEvent

MAX_PAGE_SIZE = 500


class AuditQueryForm(trail.AuditFilterForm):
    """The page's filters and cursors, and how many rows a page has."""

    page_size = forms.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)


class AuditEventSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    actor = serializers.IntegerField(source="actor_id", read_only=True, allow_null=True, help_text="the user's id, if any")
    team = serializers.IntegerField(source="team_id", read_only=True, allow_null=True, help_text="the target's team")
    before = serializers.JSONField(read_only=True, allow_null=True, help_text="the changed values before (secrets never)")
    after = serializers.JSONField(read_only=True, allow_null=True, help_text="the changed values after (secrets never)")

    class Meta:
        model = AuditEvent
        fields = [
            "id", "created_at", "actor", "actor_name", "team", "action", "target_type", "target_id",
            "outcome", "remote_addr", "request_id", "before", "after",
        ]  # fmt: skip
        read_only_fields = fields


class AuditPageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    next = serializers.URLField(allow_null=True, help_text="the page of older rows (`?before=<id>`), if any")
    previous = serializers.URLField(allow_null=True, help_text="the page of newer rows (`?after=<id>`), if any")
    results = AuditEventSerializer(many=True)


def _text(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, str, description=description)


_PARAMETERS = [
    _text("actor", "a username, or system, farm, anonymous"),
    OpenApiParameter("team", int, description="a team's id"),
    _text("action", 'exact (job.pause), or a family ending in ".": job.'),
    _text("target_type", "User, Team, Membership, FarmAccount, Manifest, TransferJob, FarmTask, …"),
    _text("target_id", "the target's id"),
    _text("outcome", "ok, failed, refused, locked_out, completed, …"),
    _text("request_id", "the X-Request-ID of the request that made the rows"),
    _text("since", "from this time: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]"),
    _text("until", "before this time; a bare date: through its end"),
    OpenApiParameter("before", OpenApiTypes.INT64, description="a cursor: rows older than this id (`next` has it)"),
    OpenApiParameter("after", OpenApiTypes.INT64, description="a cursor: the page just newer than this id (`previous`)"),
    OpenApiParameter("page_size", int, description=f"rows per page, 1 to {MAX_PAGE_SIZE} (50)"),
]


def _link(request: Request, form: AuditQueryForm, cursor: dict[str, int]) -> str:
    query = form.filters() | ({"page_size": str(form.cleaned_data["page_size"])} if form.cleaned_data["page_size"] else {})
    return request.build_absolute_uri(request.path + "?" + urlencode(query | {k: str(v) for k, v in cursor.items()}))


class AuditViewSet(viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Staff only: for anyone else the audit does not exist (404). Read-only: other methods are a 405."""

    serializer_class = AuditEventSerializer
    lookup_value_regex = "[0-9]{1,18}"
    pagination_class = None  # keyset pages of its own (see the module's docstring)
    filter_backends: list[Any] = []  # the page's filter form (transfers.audit)

    def _staff_only(self) -> None:
        if not selectors.may_audit(self.request.user):
            raise NotFound("no such page")

    @extend_schema(parameters=_PARAMETERS, responses=AuditPageSerializer)
    def list(self, request: Request) -> Response:
        self._staff_only()
        form = AuditQueryForm(request.query_params, teams=selectors.teams_for(request.user))
        if not form.is_valid():
            raise _form_invalid(form)
        events = trail.filtered(selectors.audit_events_for(request.user), form)
        data = form.cleaned_data
        page = trail.page_of(events, before=data["before"], after=data["after"], size=data["page_size"] or trail.PAGE_SIZE)
        body = {
            "next": _link(request, form, {"before": page.older}) if page.older else None,
            "previous": _link(request, form, {"after": page.newer}) if page.newer else None,
            "results": AuditEventSerializer(page.rows, many=True).data,
        }
        return Response(body)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        self._staff_only()
        event = get_object_or_404(selectors.audit_events_for(request.user), pk=pk)
        return Response(AuditEventSerializer(event).data)
