"""Who sees and does what: the only module that builds querysets for pages, the API, form choices and websockets.

Teams own farm accounts; manifests and jobs belong to a team through their account (`account__team`).
A user's role in a team decides what they may do there:

    action        lead  member  viewer   (staff and superusers: everything; users in no team: nothing)
    view          yes   yes     yes      accounts (never their keys), manifests, jobs, job groups, job
                                         websockets, farm tasks and their frames
    run           yes   yes     -        start an upload of a manifest (or of several, as a job group)
    control       yes   yes     -        pause, resume, cancel, retry, change max_speed of a job; the
                                         same of every job of a group at once
    manage        yes   -       -        create and edit accounts, import and delete manifests; simulate a
                                         render, (re)generate and revoke an account's farm events token;
                                         make and revoke the team's kiosk links (a read-only dashboard)
                                         add and remove the team's members, change their roles
    the audit     -     -       -        staff only (audit_events_for)

Reads of an object the user may not see are answered like a missing object (404); the callers check an
action on an object they may see with `user_may`, and answer 403 (API) or an error message (pages).
"""

from __future__ import annotations

from typing import Any, Literal

from django.db.models import BooleanField, Count, ExpressionWrapper, Q, QuerySet, Sum

from transfers.models import (
    AuditEvent,
    BandwidthBudget,
    FarmAccount,
    FarmFrame,
    FarmTask,
    JobGroup,
    Kiosk,
    Manifest,
    ManifestEntry,
    ManifestWork,
    Membership,
    NotificationDelivery,
    Team,
    TransferJob,
)

Action = Literal["view", "run", "control", "manage"]
Role = Literal["viewer", "member", "lead"]

_L, _M, _V = Membership.Role.LEAD, Membership.Role.MEMBER, Membership.Role.VIEWER
ROLES_FOR: dict[str, frozenset[str]] = {
    "view": frozenset({_L, _M, _V}),
    "run": frozenset({_L, _M}),
    "control": frozenset({_L, _M}),
    "manage": frozenset({_L}),
}
_AT_LEAST: dict[str, frozenset[str]] = {"viewer": ROLES_FOR["view"], "member": ROLES_FOR["run"], "lead": ROLES_FOR["manage"]}


def _sees_all(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser))


def _restrict(queryset: QuerySet[Any], user: Any, roles: frozenset[str], team_path: str) -> QuerySet[Any]:
    if user is None or not user.is_authenticated or not user.is_active:
        return queryset.none()
    if _sees_all(user):
        return queryset
    teams = Membership.objects.filter(user=user, role__in=roles).values("team_id")
    return queryset.filter(**{f"{team_path}__in": teams})


def teams_for(user: Any, *, role: Role = "viewer") -> QuerySet[Team]:
    """Teams in which the user has at least `role` (staff: every team)."""
    return _restrict(Team.objects.order_by("name"), user, _AT_LEAST[role], "pk")


def accounts_for(user: Any, *, action: Literal["view", "run", "manage"] = "view") -> QuerySet[FarmAccount]:
    """Farm accounts, their key deferred (never decrypted for a list); `key_stored` says whether one is set."""
    accounts = (
        FarmAccount.objects.select_related("team")
        .defer("access_key")
        .annotate(key_stored=ExpressionWrapper(~Q(access_key=""), output_field=BooleanField()))
        .order_by("name")
    )
    return _restrict(accounts, user, ROLES_FOR[action], "team")


def budgets_for(user: Any) -> QuerySet[BandwidthBudget]:
    """Bandwidth budgets the user may see: the studio's (it limits every team) and their teams' accounts' ones."""
    budgets = (
        BandwidthBudget.objects.select_related("account").defer("account__access_key").order_by("scope", "account__name", "line")
    )
    if user is None or not user.is_authenticated or not user.is_active:
        return budgets.none()
    if _sees_all(user):
        return budgets
    teams = Membership.objects.filter(user=user, role__in=ROLES_FOR["view"]).values("team_id")
    return budgets.filter(Q(scope=BandwidthBudget.Scope.STUDIO) | Q(account__team__in=teams))


def budgets_of_team(team_id: int) -> QuerySet[BandwidthBudget]:
    """The budgets a team's kiosk shows: the studio's and the team's accounts' ones."""
    budgets = (
        BandwidthBudget.objects.select_related("account").defer("account__access_key").order_by("scope", "account__name", "line")
    )
    return budgets.filter(Q(scope=BandwidthBudget.Scope.STUDIO) | Q(account__team_id=team_id))


def manifests_for(user: Any, *, action: Literal["view", "run", "manage"] = "view") -> QuerySet[Manifest]:
    manifests = Manifest.objects.select_related("account", "account__team", "created_by").defer("account__access_key")
    return _restrict(manifests, user, ROLES_FOR[action], "account__team")


def manifest_entries_for(user: Any, manifest: Manifest) -> QuerySet[ManifestEntry]:
    """The entries of a manifest the user may see (none otherwise), unordered: callers page by number.

    Checked once, then filtered by equality: `manifest_id IN (subquery)` makes PostgreSQL sort every
    entry of the manifest instead of walking the (manifest, number) index."""
    if not manifests_for(user).filter(pk=manifest.pk).exists():
        return ManifestEntry.objects.none()
    return ManifestEntry.objects.filter(manifest_id=manifest.pk).order_by()


def manifest_works_for(user: Any, manifest: Manifest) -> QuerySet[ManifestWork]:
    """Appends, splits and dry runs of a manifest the user may see, the latest first."""
    return ManifestWork.objects.filter(manifest__in=manifests_for(user).filter(pk=manifest.pk).values("pk"))


def jobs_for(user: Any, *, action: Literal["view", "control"] = "view") -> QuerySet[TransferJob]:
    jobs = TransferJob.objects.select_related("account", "account__team", "manifest", "created_by").defer("account__access_key")
    return _restrict(jobs, user, ROLES_FOR[action], "account__team")


def groups_for(user: Any, *, action: Literal["view", "control"] = "view") -> QuerySet[JobGroup]:
    """Job groups (thread_pool_upload), with their jobs' figures added up (`files_total`, `bytes_done`, ...)."""
    jobs = "jobs__"
    figures = ["files_total", "files_done", "files_failed", "files_skipped", "bytes_total", "bytes_done", "bytes_sent"]
    groups = JobGroup.objects.select_related("account", "account__team", "created_by").defer("account__access_key")
    groups = groups.annotate(job_count=Count("jobs"), **{name: Sum(jobs + name, default=0) for name in figures})
    groups = groups.order_by("-created_at", "-pk")  # Meta.ordering does not apply to an aggregating query
    return _restrict(groups, user, ROLES_FOR[action], "account__team")


def jobs_of_kiosk(kiosk: Kiosk) -> QuerySet[TransferJob]:
    """The jobs a kiosk screen shows: its team's, whoever looks (the signed link is the permission)."""
    jobs = TransferJob.objects.select_related("account", "account__team", "manifest", "created_by").defer("account__access_key")
    return jobs.filter(account__team=kiosk.team_id)


def kiosks_for(user: Any) -> QuerySet[Kiosk]:
    """Kiosk links of the teams the user leads (staff: all)."""
    return _restrict(Kiosk.objects.select_related("team", "created_by"), user, ROLES_FOR["manage"], "team")


def kiosk_live(pk: int) -> Kiosk | None:
    """A kiosk that is not revoked (the link's signature already checked by transfers.kiosks)."""
    return Kiosk.objects.select_related("team").filter(pk=pk, revoked=False).first()


def farm_tasks_for(user: Any, *, action: Literal["view", "manage"] = "view") -> QuerySet[FarmTask]:
    """Farm tasks of the accounts the user may see (or manage); their frames counted as `frames_done`."""
    tasks = FarmTask.objects.select_related("account", "account__team", "parent").defer("account__access_key")
    tasks = tasks.annotate(frames_done=Count("frames", filter=Q(frames__finished_at__isnull=False)))
    return tasks.filter(account__in=accounts_for(user, action=action).values("pk"))


def farm_tasks_of(account: FarmAccount) -> QuerySet[FarmTask]:
    """The tasks of one local-farm account its connector reads (the account itself came from
    accounts_for), with their finished frames counted as `frames_done`."""
    tasks = FarmTask.objects.filter(account=account).select_related("parent")
    return tasks.annotate(frames_done=Count("frames", filter=Q(frames__finished_at__isnull=False)))


def farm_frames_for(user: Any) -> QuerySet[FarmFrame]:
    frames = FarmFrame.objects.select_related("task")
    return frames.filter(task__account__in=accounts_for(user).values("pk"))


def notification_deliveries_for(user: Any) -> QuerySet[NotificationDelivery]:
    """The user's own notification attempts, newest first (nobody sees another user's, staff neither)."""
    if user is None or not user.is_authenticated:
        return NotificationDelivery.objects.none()
    return NotificationDelivery.objects.filter(user=user).select_related("job").order_by("-created_at", "-pk")


def members_for(user: Any, team: Team) -> QuerySet[Membership]:
    """The memberships of a team the user may see (any role in it; staff: every team), by username."""
    memberships = Membership.objects.select_related("user").order_by("user__username")
    return _restrict(memberships.filter(team=team), user, ROLES_FOR["view"], "team")


def may_audit(user: Any) -> bool:
    """The audit page and its export are for staff (and superusers) only."""
    return _sees_all(user)


def audit_events_for(user: Any) -> QuerySet[AuditEvent]:
    """The audit trail: every row for staff, none for anyone else (the audit page answers them 404)."""
    return AuditEvent.objects.all() if _sees_all(user) else AuditEvent.objects.none()


_TEAM_PATH: dict[type, str] = {
    Team: "pk",
    FarmAccount: "team",
    Manifest: "account__team",
    TransferJob: "account__team",
    JobGroup: "account__team",
    FarmTask: "account__team",
}


def user_may(user: Any, action: Action, obj: FarmAccount | Manifest | TransferJob | JobGroup | Team | FarmTask) -> bool:
    """Whether the user may do `action` on this object (a team: `action` in that team, e.g. manage its accounts)."""
    if _sees_all(user):
        return True
    model = type(obj)
    return _restrict(model._default_manager.filter(pk=obj.pk), user, ROLES_FOR[action], _TEAM_PATH[model]).exists()
