"""The REST API. Every queryset comes from transfers.selectors: an object the user may not see is a 404;
an action their role does not allow on one they may see is a 403 (services raise PermissionDenied)."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from transfers import kinds, selectors, services
from transfers.accounts import AccountInvalid, account_check, account_save, steps_as_json
from transfers.api.errors import Conflict, Invalid
from transfers.api.filters import FarmAccountFilter, JobFilter, ManifestFilter
from transfers.api.schema import options_component
from transfers.api.serializers import (
    AccountCheckSerializer,
    FarmAccountSerializer,
    JobCreateSerializer,
    JobOptionsSerializer,
    ManifestImportSerializer,
    ManifestSerializer,
    MaxSpeedSerializer,
    TransferJobSerializer,
)
from transfers.models import FarmAccount, Manifest, TransferJob

MAX_KBPS = 10_485_760  # the kinds' own bound on max_speed (transfers.kinds.options.KBps)


def _start(request: Request, *, kind: str, account: FarmAccount | None, manifest: Manifest | None, options: object) -> Response:
    """Start a job of any kind (transfers.jobs.job_create): 201 with the job, 400 naming what is wrong."""
    from transfers.jobs import job_create

    if isinstance(options, QueryDict):  # a form post: one value per name, a list where repeated
        options = {key: values if len(values) > 1 else values[0] for key, values in options.lists()}
    if not isinstance(options, dict):
        raise ValidationError({"options": ["an object of the kind's options, by the SDK's names"]})
    target = account if account is not None else manifest.account if manifest is not None else None
    try:
        job = job_create(
            kind=kind,
            account=target,
            manifest=manifest,
            user=request.user,
            options=options,
            request=request._request,  # type: ignore[arg-type]
        )
    except (kinds.OptionsInvalid, kinds.UnknownKind, services.UnsupportedAccount, services.ManifestNotReady) as exc:
        raise Invalid(str(exc)) from None
    return Response(TransferJobSerializer(job).data, status=status.HTTP_201_CREATED)


# The SDK's names as URLs: /api/accounts/<id>/download/ and the like; /api/manifests/<id>/upload/.
_ACCOUNT_KINDS = "|".join(name for name in kinds.names() if not kinds.get(name).uses_manifest)
_MANIFEST_KINDS = "|".join(name for name in kinds.names() if kinds.get(name).uses_manifest and name != "upload_asset")


def _door(kind_names: str, operation_id: str) -> Callable[..., object]:
    """The schema of a door named by the SDK: the kind is a path parameter, the body its options."""
    return extend_schema(
        operation_id=operation_id,
        parameters=[OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=kind_names.split("|"), description="an SDK name")],
        request={
            "application/json": {
                "anyOf": [{"$ref": f"#/components/schemas/{options_component(name)}"} for name in kind_names.split("|")],
                "description": "the kind's options, by the SDK's names",
            }
        },
        responses={201: TransferJobSerializer},
    )


_JOB = extend_schema(request=None, responses=TransferJobSerializer)


class FarmAccountViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet
):
    """Every member of a team sees its accounts (never their keys); its leads and staff create and edit them."""

    serializer_class = FarmAccountSerializer
    filterset_class = FarmAccountFilter

    def get_queryset(self) -> QuerySet[FarmAccount]:
        return selectors.accounts_for(self.request.user)

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        if not selectors.teams_for(request.user, role="lead").exists():
            raise PermissionDenied("storing farm credentials needs the lead role in a team (or staff, once a team exists)")
        return super().create(request, *args, **kwargs)

    def update(self, request: Request, *args: object, **kwargs: object) -> Response:
        if not selectors.user_may(request.user, "manage", self.get_object()):  # before validation: a viewer learns nothing
            raise PermissionDenied("only a lead of the account's team (or staff) may change its credentials")
        return super().update(request, *args, **kwargs)

    def _save(self, serializer: FarmAccountSerializer, account: FarmAccount | None) -> None:
        data = dict(serializer.validated_data)
        key, clear = data.pop("access_key", None), data.pop("clear_access_key", False)
        try:
            serializer.instance = account_save(
                user=self.request.user, data=data, account=account, key=key, clear_key=clear, request=self.request._request
            )
        except AccountInvalid as exc:
            raise ValidationError(exc.errors) from None

    def perform_create(self, serializer: FarmAccountSerializer) -> None:  # type: ignore[override]
        self._save(serializer, None)

    def perform_update(self, serializer: FarmAccountSerializer) -> None:  # type: ignore[override]
        self._save(serializer, serializer.instance)

    @extend_schema(request=None, responses=AccountCheckSerializer)
    @action(detail=True, methods=["post"], url_path="check")
    def check_connection(self, request: Request, pk: str | None = None) -> Response:
        """Test connection: the account's connector runs its own check; {"ok", "steps": [{name, ok, message}]}."""
        steps = account_check(account=self.get_object(), user=request.user, request=request._request)
        answer = {"ok": all(step.ok for step in steps), "steps": steps_as_json(steps)}
        return Response(AccountCheckSerializer(answer).data)

    @_door(_ACCOUNT_KINDS, "accounts_start")
    @action(detail=True, methods=["post"], url_path=rf"(?P<kind>{_ACCOUNT_KINDS})")
    def start(self, request: Request, pk: str | None = None, kind: str = "") -> Response:
        """The SDK's download, auto_download, auto_download_after_task_completed, upload_config on this account;
        the body is the kind's options."""
        return _start(request, kind=kind, account=self.get_object(), manifest=None, options=request.data)


class ManifestViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ManifestSerializer
    filterset_class = ManifestFilter

    def get_queryset(self) -> QuerySet[Manifest]:
        return selectors.manifests_for(self.request.user)

    @extend_schema(request={"multipart/form-data": ManifestImportSerializer}, responses={202: ManifestSerializer})
    def create(self, request: Request) -> Response:
        """Accept an upload.json or an upload list: 202, state "importing"; a worker reads and checks it,
        then GET shows state "ready", or "refused" with its problems."""
        form = ManifestImportSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        manifest = services.manifest_import_begin(
            name=form.validated_data["name"],
            account=form.validated_data["account"],
            chunks=form.validated_data["file"].chunks(),
            spooled=getattr(form.validated_data["file"], "temporary_file_path", lambda: None)(),
            user=request.user,
            request=request._request,
            transmit_type=form.validated_data["transmit_type"],
        )
        return Response(ManifestSerializer(manifest).data, status=status.HTTP_202_ACCEPTED)

    @_door(_MANIFEST_KINDS, "manifests_start")
    @action(detail=True, methods=["post"], url_path=rf"(?P<kind>{_MANIFEST_KINDS})")
    def start(self, request: Request, pk: str | None = None, kind: str = "") -> Response:
        """The SDK's upload (configuration files, then this manifest's assets); the body is its options."""
        return _start(request, kind=kind, account=None, manifest=self.get_object(), options=request.data)

    @extend_schema(request=JobOptionsSerializer, responses={201: TransferJobSerializer})
    @action(detail=True, methods=["post"])
    def upload_asset(self, request: Request, pk: str | None = None) -> Response:
        """The SDK's upload_asset: upload every file the manifest lists into the account's input storage."""
        options = JobOptionsSerializer(data=request.data)
        options.is_valid(raise_exception=True)
        try:
            job = services.job_create_upload(
                manifest=self.get_object(), user=request.user, request=request._request, options=options.validated_data
            )
        except (services.UnsupportedAccount, services.ManifestNotReady, kinds.OptionsInvalid) as exc:
            raise Invalid(str(exc)) from None
        return Response(TransferJobSerializer(job).data, status=status.HTTP_201_CREATED)


class TransferJobViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TransferJobSerializer
    filterset_class = JobFilter

    def get_queryset(self) -> QuerySet[TransferJob]:
        return selectors.jobs_for(self.request.user)

    @extend_schema(request=JobCreateSerializer, responses={201: TransferJobSerializer})
    def create(self, request: Request) -> Response:
        """{"kind": one of the SDK's job kinds, "account" or "manifest", "options": {...}}."""
        form = JobCreateSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        data = form.validated_data
        return _start(
            request, kind=data["kind"], account=data.get("account"), manifest=data.get("manifest"), options=data["options"]
        )

    def _controlled_job(self) -> TransferJob:
        job = self.get_object()  # 404 when the user may not see it
        if not selectors.user_may(self.request.user, "control", job):
            raise PermissionDenied("your role in this job's team does not allow controlling it")
        return job

    def _act(self, request: Request, act: Callable[..., bool], verb: str) -> Response:
        job = self._controlled_job()
        if not act(job=job, user=request.user, request=request._request):
            raise Conflict(f"cannot {verb} a job that is {job.status}")
        job.refresh_from_db()
        return Response(TransferJobSerializer(job).data)

    @_JOB
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, services.job_pause, "pause")

    @_JOB
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, services.job_resume, "resume")

    @_JOB
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, services.job_cancel, "cancel")

    @_JOB
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, services.job_retry, "retry")

    @action(detail=True, methods=["get"])
    def failures(self, request: Request, pk: str | None = None) -> Response:
        """The job's failed files (the first 1000), each with why: what a script reports when a job did not complete."""
        job = self.get_object()
        failed = job.items.filter(state="failed").order_by("number").values("number", "local", "server", "error")[:1000]
        return Response({"count": job.items.filter(state="failed").count(), "results": list(failed)})

    @extend_schema(request=MaxSpeedSerializer, responses=TransferJobSerializer)
    @action(detail=True, methods=["post"])
    def max_speed(self, request: Request, pk: str | None = None) -> Response:
        """Change the speed limit of a running job: {"max_speed": KB/s or null}."""
        job = self._controlled_job()
        if not isinstance(request.data, dict):  # a JSON list or string: nothing to .get() from
            raise ValidationError({"non_field_errors": ['send an object: {"max_speed": KB/s or null}']})
        value = request.data.get("max_speed")
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_KBPS):
            raise ValidationError({"max_speed": [f"a whole number of KB/s from 1 to {MAX_KBPS}, or null"]})
        if job.is_terminal:
            raise Conflict(f"cannot change the speed of a job that is {job.status}")
        services.job_set_max_speed(job=job, max_speed=value, user=request.user, request=request._request)
        return Response(TransferJobSerializer(job).data)
