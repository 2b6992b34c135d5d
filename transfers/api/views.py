"""The REST API. Every queryset comes from transfers.selectors: an object the user may not see is a 404;
an action their role does not allow on one they may see is a 403 (services raise PermissionDenied)."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied
from django.db.models import QuerySet
from django.forms import Form
from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from transfers import kinds, manifest_browse, manifest_work, selectors, services
from transfers.accounts import AccountInvalid, account_check, account_save, steps_as_json
from transfers.api.errors import Conflict, ErrorSerializer, Invalid
from transfers.api.filters import FarmAccountFilter, JobFilter, ManifestFilter
from transfers.api.schema import options_component
from transfers.api.serializers import (
    AccountCheckSerializer,
    FarmAccountSerializer,
    FolderListSerializer,
    JobCreateSerializer,
    JobFailuresSerializer,
    JobOptionsSerializer,
    ManifestAppendSerializer,
    ManifestEntryPageSerializer,
    ManifestEntryQuerySerializer,
    ManifestEntrySerializer,
    ManifestImportSerializer,
    ManifestSerializer,
    ManifestSplitSerializer,
    ManifestWorkSerializer,
    MaxSpeedSerializer,
    TransferJobSerializer,
)
from transfers.engine.paths import PathRefused
from transfers.forms import EntryFilterForm
from transfers.models import FarmAccount, Manifest, ManifestWork, TransferJob

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
_WORK = {202: OpenApiResponse(ManifestWorkSerializer, description="accepted: a worker does it; GET works/ follows it")}


def _form_invalid(form: Form) -> ValidationError:
    """A Django form's errors as the API's 400 (`non_field_errors` for the form's own)."""
    return ValidationError(
        {("non_field_errors" if name == NON_FIELD_ERRORS else name): list(messages) for name, messages in form.errors.items()}
    )


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
        """Accept an upload.json or an upload list (`file`, or `server_path`: a file on the server beneath an
        allowed root): 202, state "importing"; a worker reads and checks it, then GET shows state
        "ready", or "refused" with its problems."""
        form = ManifestImportSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        if form.validated_data.get("server_path"):
            try:
                manifest = manifest_work.manifest_import_server_file(
                    name=form.validated_data["name"],
                    account=form.validated_data["account"],
                    path=form.validated_data["server_path"],
                    user=request.user,
                    request=request._request,
                    transmit_type=form.validated_data["transmit_type"],
                )
            except manifest_work.WorkRefused as exc:
                raise Invalid(str(exc)) from None
            return Response(ManifestSerializer(manifest).data, status=status.HTTP_202_ACCEPTED)
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

    # --- browsing, the folder picker, append, split, dry run (transfers.manifest_browse, manifest_work) ---

    @extend_schema(
        parameters=[ManifestEntryQuerySerializer],
        responses={
            200: ManifestEntryPageSerializer,
            409: OpenApiResponse(ErrorSerializer, description="the manifest is not ready"),
        },
    )
    @action(detail=True, methods=["get"])
    def entries(self, request: Request, pk: str | None = None) -> Response:
        """A keyset page of entries: ?q= (part of the local path), folder=, ext=, size_min=, size_max=,
        uploaded=yes|no (per the ledger), after= or before= (the cursors of the previous answer). A
        filtered page searches at most WINDOW entries: `searched` says which, `next` continues."""
        manifest = self.get_object()
        form = EntryFilterForm(request.query_params)
        if not form.is_valid():
            raise _form_invalid(form)
        if manifest.state != manifest.State.READY:
            raise Conflict(f"the manifest is {manifest.state}: no entries to browse")
        entries = manifest_browse.filtered(selectors.manifest_entries_for(request.user, manifest), manifest, form.cleaned_data)
        page = manifest_browse.page(
            entries,
            last=manifest.entry_count,
            after=form.cleaned_data.get("after"),
            before=form.cleaned_data.get("before"),
            window=manifest_browse.WINDOW if form.filtering() else None,
        )
        return Response(
            {
                "results": ManifestEntrySerializer(page.entries, many=True).data,
                "next": page.after,
                "previous": page.before,
                "searched": list(page.searched) if page.searched else None,
            }
        )

    @extend_schema(
        parameters=[OpenApiParameter("path", str, description="an absolute folder beneath an allowed root; none: the roots")],
        responses=FolderListSerializer,
    )
    @action(detail=False, methods=["get"])
    def folders(self, request: Request) -> Response:
        """The folder picker: ?path= one folder beneath an allowed root (no path: the roots); symlinks are
        listed as `others`, never followed."""
        if not selectors.teams_for(request.user, role="lead").exists():
            raise PermissionDenied("choosing files on the server needs the lead role in a team")
        path = request.query_params.get("path", "")
        if not path:
            return Response(
                {
                    "path": "",
                    "parent": None,
                    "roots": manifest_browse.roots(),
                    "folders": [],
                    "files": [],
                    "others": [],
                    "more": 0,
                }
            )
        try:
            listed = manifest_browse.folder_list(path)
        except PathRefused as exc:
            raise Invalid(str(exc)) from None
        except FileNotFoundError:
            raise Invalid(f"{path!r} does not exist") from None
        except OSError as exc:
            raise Invalid(f"{path!r} cannot be listed: {exc.strerror or exc}") from None
        return Response(
            {
                "path": listed.path,
                "parent": listed.parent,
                "roots": manifest_browse.roots(),
                "folders": listed.folders,
                "files": [{"name": name, "size": size} for name, size in listed.files],
                "others": listed.others,
                "more": listed.more,
            }
        )

    @extend_schema(operation_id="manifests_append_new", request=ManifestAppendSerializer, responses=_WORK)
    @action(detail=False, methods=["post"])
    def append(self, request: Request) -> Response:
        """append_to_upload into {"manifest": id}, or a new manifest {"name", "account"}: 202 with the work."""
        return self._append(request, manifest=None)

    @extend_schema(operation_id="manifests_append_to", request=ManifestAppendSerializer, responses=_WORK)
    @action(detail=True, methods=["post"], url_path="append")
    def append_to(self, request: Request, pk: str | None = None) -> Response:
        """append_to_upload into this manifest: {"paths": [...]}; 202 with the work."""
        return self._append(request, manifest=self.get_object())

    def _append(self, request: Request, *, manifest: Manifest | None) -> Response:
        form = ManifestAppendSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            work = manifest_work.manifest_append_begin(
                paths=data["paths"],
                manifest=manifest or data.get("manifest"),
                name=data.get("name", ""),
                account=data.get("account"),
                user=request.user,
                request=request._request,
            )
        except manifest_work.WorkRefused as exc:
            raise Invalid(str(exc)) from None
        return Response(ManifestWorkSerializer(work).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=ManifestSplitSerializer, responses=_WORK)
    @action(detail=True, methods=["post"])
    def split(self, request: Request, pk: str | None = None) -> Response:
        """cutting_upload: {"max_resources_number": N}; 202 with the work, whose result lists the parts."""
        manifest = self.get_object()
        form = ManifestSplitSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return self._work(
            lambda: manifest_work.manifest_split_begin(
                manifest=manifest,
                max_resources_number=form.validated_data["max_resources_number"],
                user=request.user,
                request=request._request,
            )
        )

    @extend_schema(request=None, responses=_WORK)
    @action(detail=True, methods=["post"], url_path="dry-run")
    def dry_run(self, request: Request, pk: str | None = None) -> Response:
        """What an upload would send; 202 with the work, whose result holds the figures."""
        manifest = self.get_object()
        return self._work(
            lambda: manifest_work.manifest_dry_run_begin(manifest=manifest, user=request.user, request=request._request)
        )

    def _work(self, begin: Callable[[], ManifestWork]) -> Response:
        try:
            work = begin()
        except manifest_work.WorkRefused as exc:
            raise Invalid(str(exc)) from None
        return Response(ManifestWorkSerializer(work).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=ManifestWorkSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def works(self, request: Request, pk: str | None = None) -> Response:
        """The manifest's appends, splits and dry runs, the latest first (20)."""
        manifest = self.get_object()
        return Response(ManifestWorkSerializer(selectors.manifest_works_for(request.user, manifest)[:20], many=True).data)


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

    @extend_schema(responses=JobFailuresSerializer)
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
