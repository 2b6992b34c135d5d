"""Job groups in the API: the SDK's thread_pool_upload as one group of upload_asset jobs (transfers.groups).

POST /api/groups/ {"manifests": [ids], "pool_size": 10, "options": {...}} answers 201 with the group;
GET /api/groups/ and /api/groups/<id>/ show its status, figures and jobs; POST
/api/groups/<id>/<pause|resume|cancel|retry>/ applies the one control to all its jobs.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from transfers import groups, kinds, selectors, services
from transfers.api.errors import Conflict, Invalid
from transfers.models import JobGroup

_JOB_FIELDS = ["id", "manifest", "status", "files_total", "files_done", "files_failed", "error"]
_FIGURES = ["files_total", "files_done", "files_failed", "files_skipped", "bytes_total", "bytes_done", "bytes_sent"]


class JobGroupSerializer(serializers.ModelSerializer):
    team = serializers.IntegerField(source="account.team_id", read_only=True)
    status = serializers.SerializerMethodField()
    actions = serializers.SerializerMethodField()
    is_terminal = serializers.SerializerMethodField()
    percent = serializers.SerializerMethodField()
    jobs = serializers.SerializerMethodField()
    # Its jobs' figures added up (selectors.groups_for annotates them).
    files_total = serializers.IntegerField(read_only=True)
    files_done = serializers.IntegerField(read_only=True)
    files_failed = serializers.IntegerField(read_only=True)
    files_skipped = serializers.IntegerField(read_only=True)
    bytes_total = serializers.IntegerField(read_only=True)
    bytes_done = serializers.IntegerField(read_only=True)
    bytes_sent = serializers.IntegerField(read_only=True)

    class Meta:
        model = JobGroup
        fields = ["id", "account", "team", "pool_size", "options", "held", "created_at", "status", "is_terminal",
                  "actions", "percent", *_FIGURES, "jobs"]  # fmt: skip
        read_only_fields = fields

    def to_representation(self, group: JobGroup) -> dict[str, Any]:
        self._jobs = list(group.jobs.order_by("pk").values(*_JOB_FIELDS))
        return super().to_representation(group)

    def _statuses(self) -> list[str]:
        return [job["status"] for job in self._jobs]

    def get_status(self, group: JobGroup) -> str:
        return groups.group_status(self._statuses(), held=group.held)

    def get_actions(self, group: JobGroup) -> list[str]:
        return groups.group_actions(self._statuses(), held=group.held)

    def get_is_terminal(self, group: JobGroup) -> bool:
        return not set(self._statuses()) & {"queued", "running", "paused"}

    def get_percent(self, group: JobGroup) -> int:
        total, done = group.bytes_total, group.bytes_done  # type: ignore[attr-defined]
        return min(100, done * 100 // total) if total else (100 if self.get_is_terminal(group) else 0)

    def get_jobs(self, group: JobGroup) -> list[dict[str, Any]]:
        return self._jobs


class JobGroupCreateSerializer(serializers.Serializer):
    manifests = serializers.ListField(child=serializers.IntegerField(), allow_empty=False, max_length=groups.MAX_MANIFESTS)
    pool_size = serializers.IntegerField(min_value=1, max_value=groups.MAX_POOL_SIZE, default=10)
    options = serializers.DictField(required=False, default=dict)


_GROUP = extend_schema(request=None, responses=JobGroupSerializer)


class JobGroupViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = JobGroupSerializer

    def get_queryset(self) -> QuerySet[JobGroup]:
        return selectors.groups_for(self.request.user)

    @extend_schema(request=JobGroupCreateSerializer, responses={201: JobGroupSerializer})
    def create(self, request: Request) -> Response:
        form = JobGroupCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        wanted = form.validated_data["manifests"]
        found = selectors.manifests_for(request.user).in_bulk(wanted)
        missing = [pk for pk in wanted if pk not in found]
        if missing:  # another team's manifest is as unknown as one that does not exist
            raise ValidationError({"manifests": [f"no manifest {pk}" for pk in missing]})
        try:
            group = groups.group_create(
                manifests=[found[pk] for pk in wanted],
                pool_size=form.validated_data["pool_size"],
                options=form.validated_data["options"],
                user=request.user,
                request=request._request,
            )
        except (groups.GroupInvalid, kinds.OptionsInvalid, services.ManifestNotReady, services.UnsupportedAccount) as exc:
            raise Invalid(str(exc)) from None
        return Response(JobGroupSerializer(self.get_queryset().get(pk=group.pk)).data, status=status.HTTP_201_CREATED)

    def _act(self, request: Request, verb: groups.GroupAction) -> Response:
        group = self.get_object()  # 404 when the user may not see it
        if not selectors.user_may(request.user, "control", group):
            raise PermissionDenied("your role in this group's team does not allow controlling it")
        data = JobGroupSerializer(group).data
        if verb not in data["actions"]:
            raise Conflict(f"cannot {verb} a group that is {data['status']}")
        groups.group_act(group=group, action=verb, user=request.user, request=request._request)
        return Response(JobGroupSerializer(self.get_queryset().get(pk=group.pk)).data)

    @_GROUP
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "pause")

    @_GROUP
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "resume")

    @_GROUP
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "cancel")

    @_GROUP
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, "retry")
