from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from transfers import services
from transfers.api.serializers import (
    FarmAccountSerializer,
    JobOptionsSerializer,
    ManifestImportSerializer,
    ManifestSerializer,
    TransferJobSerializer,
)
from transfers.engine.manifest import ManifestInvalid
from transfers.models import FarmAccount, Manifest, TransferJob


class FarmAccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    queryset = FarmAccount.objects.order_by("name")
    serializer_class = FarmAccountSerializer

    def perform_create(self, serializer: FarmAccountSerializer) -> None:
        account = serializer.save()
        services.audit_record(actor=self.request.user, action="account.create", target=account, request=self.request)


class ManifestViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Manifest.objects.select_related("account")
    serializer_class = ManifestSerializer

    def create(self, request: Request) -> Response:
        form = ManifestImportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            manifest = services.manifest_import(
                name=form.validated_data["name"],
                account=form.validated_data["account"],
                data=form.validated_data["file"].read(),
                user=request.user,
                request=request._request,
            )
        except ManifestInvalid as exc:
            problems = [{"entry": p.number, "reason": p.reason} for p in exc.problems]
            return Response({"detail": "manifest refused", "problems": problems}, status=status.HTTP_400_BAD_REQUEST)
        return Response(ManifestSerializer(manifest).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def upload_asset(self, request: Request, pk: str | None = None) -> Response:
        """The SDK's upload_asset: upload every file the manifest lists into the account's input storage."""
        options = JobOptionsSerializer(data=request.data)
        options.is_valid(raise_exception=True)
        job = services.job_create_upload(
            manifest=self.get_object(), user=request.user, request=request._request, options=options.validated_data
        )
        return Response(TransferJobSerializer(job).data, status=status.HTTP_201_CREATED)


class TransferJobViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TransferJobSerializer

    def get_queryset(self) -> QuerySet[TransferJob]:
        return services.jobs_visible_to(user=self.request.user)
