"""Shared bandwidth budgets in the API (transfers.budget):

    GET  /api/budgets/    the studio's budget and those of your teams' accounts and lines (staff: all)
    POST /api/budgets/    {"scope": "studio"|"account"|"line", "account"?, "line"?, "max_speed"}: set one, live
                          (max_speed 0 or null removes it); the studio's for staff, the others for the account's leads

An account you cannot see is refused like an unknown one (400); one you see but do not lead is a 403.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import PermissionDenied as ApiPermissionDenied
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from transfers import budget, selectors
from transfers.models import BandwidthBudget


class BudgetSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    label = serializers.CharField(read_only=True)
    account_name = serializers.CharField(source="account.name", read_only=True, allow_null=True, default=None)

    class Meta:
        model = BandwidthBudget
        fields = ["id", "scope", "account", "account_name", "line", "max_speed", "label", "updated_at"]
        read_only_fields = fields


@extend_schema_field(OpenApiTypes.INT)
class _YourAccount(serializers.PrimaryKeyRelatedField):  # type: ignore[type-arg]
    def get_queryset(self) -> Any:
        request = self.context.get("request")
        return selectors.accounts_for(getattr(request, "user", None))


class BudgetSetSerializer(serializers.Serializer):  # type: ignore[type-arg]
    scope = serializers.ChoiceField(choices=BandwidthBudget.Scope.choices)
    account = _YourAccount(required=False, allow_null=True, default=None, help_text="for an account or line budget")
    line = serializers.CharField(required=False, allow_blank=True, default="", max_length=60, help_text="for a line budget")
    max_speed = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, allow_null=True, help_text="KB/s shared by every job it covers; 0 or null removes it"
    )


class BudgetViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    serializer_class = BudgetSerializer
    pagination_class = None

    def get_queryset(self) -> Any:
        return selectors.budgets_for(self.request.user)

    @extend_schema(request=BudgetSetSerializer, responses={200: BudgetSerializer, 204: None})
    def create(self, request: Request) -> Response:
        given = BudgetSetSerializer(data=request.data, context={"request": request})
        given.is_valid(raise_exception=True)
        data = given.validated_data
        try:
            made = budget.budget_set(
                user=request.user,
                scope=data["scope"],
                account=data["account"],
                line=data["line"],
                max_speed=data["max_speed"],
                request=request,
            )
        except budget.BudgetInvalid as exc:
            raise ValidationError({"detail": str(exc)}) from None
        except PermissionDenied as exc:
            raise ApiPermissionDenied(str(exc)) from None
        if made is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(BudgetSerializer(made).data, status=status.HTTP_200_OK)
