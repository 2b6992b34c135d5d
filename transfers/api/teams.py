"""Teams and their members in the API: /api/teams/ (the user's teams; staff: all), /api/teams/<id>/members/
(GET the list; POST {"username", "role"} to add an existing user) and /api/teams/<id>/members/<membership id>/
(PATCH {"role"}, DELETE). Changes need the lead role in the team (403 otherwise); another team is a 404."""

from __future__ import annotations

from typing import Any, NoReturn

from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from transfers import selectors, teams
from transfers.api.errors import Invalid
from transfers.models import Membership, Team


class TeamSerializer(serializers.ModelSerializer):
    member_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Team
        fields = ["id", "name", "member_count", "created_at"]


class MemberSerializer(serializers.ModelSerializer):
    user = serializers.IntegerField(source="user_id", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user", "username", "team", "role"]
        read_only_fields = ["team"]


class MemberAddSerializer(serializers.Serializer):  # type: ignore[type-arg]
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.MEMBER)


class RoleSerializer(serializers.Serializer):  # type: ignore[type-arg]
    role = serializers.ChoiceField(choices=Membership.Role.choices)


_MEMBER = OpenApiParameter("member", int, OpenApiParameter.PATH, description="the membership's id (`id` of a member)")


def _refused(exc: Exception) -> NoReturn:
    raise Invalid(str(exc)) from None


class TeamViewSet(viewsets.ReadOnlyModelViewSet):  # type: ignore[type-arg]
    serializer_class = TeamSerializer

    def get_queryset(self) -> QuerySet[Team]:
        return selectors.teams_for(self.request.user).annotate(member_count=Count("memberships"))

    @extend_schema(methods=["GET"], operation_id="teams_members_list", responses=MemberSerializer(many=True))
    @extend_schema(
        methods=["POST"], operation_id="teams_members_add", request=MemberAddSerializer, responses={201: MemberSerializer}
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def members(self, request: Request, pk: str | None = None) -> Response:
        team = self.get_object()
        if request.method == "GET":
            return Response(MemberSerializer(selectors.members_for(request.user, team), many=True).data)
        form = MemberAddSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            membership = teams.team_member_add(team=team, user=request.user, request=request._request, **form.validated_data)
        except teams.MemberRefused as exc:
            return _refused(exc)
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[_MEMBER], methods=["GET"], operation_id="teams_member_retrieve", responses=MemberSerializer)
    @extend_schema(
        parameters=[_MEMBER],
        methods=["PATCH"],
        operation_id="teams_member_set_role",
        request=RoleSerializer,
        responses=MemberSerializer,
    )
    @extend_schema(
        parameters=[_MEMBER], methods=["DELETE"], operation_id="teams_member_remove", request=None, responses={204: None}
    )
    @action(detail=True, methods=["get", "patch", "delete"], url_path=r"members/(?P<member>[0-9]+)")
    def member(self, request: Request, pk: str | None = None, member: str = "") -> Response:
        team = self.get_object()
        membership: Membership = get_object_or_404(selectors.members_for(request.user, team), pk=int(member))
        try:
            if request.method == "DELETE":
                teams.team_member_remove(membership=membership, user=request.user, request=request._request)
                return Response(status=status.HTTP_204_NO_CONTENT)
            if request.method == "PATCH":
                form = RoleSerializer(data=request.data)
                form.is_valid(raise_exception=True)
                role: Any = form.validated_data["role"]
                teams.team_member_set_role(membership=membership, role=role, user=request.user, request=request._request)
        except teams.MemberRefused as exc:
            return _refused(exc)
        return Response(MemberSerializer(membership).data)
