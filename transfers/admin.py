"""Admin: users, teams and credentials are managed here; transfers and audit rows are read-only."""

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest, HttpResponse

from transfers import services
from transfers.forms import FarmAccountForm
from transfers.models import AuditEvent, FarmAccount, Manifest, Membership, Team, TransferJob
from transfers.signals import audit_context

admin.site.site_header = "rvweb administration"
admin.site.site_title = "rvweb admin"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows made by the app's own workflows (import, upload): shown, never edited by hand."""

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    audit_noun = ""  # "manifest", "job": a deletion made here is audited as "<noun>.delete"

    def _audit_delete(self, request: HttpRequest, obj: Any) -> None:
        if self.audit_noun:
            before = {"name": str(obj)}
            services.audit_record(
                actor=request.user, action=f"{self.audit_noun}.delete", target=obj, request=request, before=before
            )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self._audit_delete(request, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:  # "delete selected": one row each
            self._audit_delete(request, obj)
        super().delete_queryset(request, queryset)


class AuditedAdmin(admin.ModelAdmin):
    """Users, teams and memberships changed through these pages are audited with the admin as the actor
    (transfers.signals writes the rows; this only says who acts and in which request)."""

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with audit_context(actor=request.user, request=request):
            return super().changeform_view(request, *args, **kwargs)

    def changelist_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with audit_context(actor=request.user, request=request):  # bulk actions: "delete selected"
            return super().changelist_view(request, *args, **kwargs)

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with audit_context(actor=request.user, request=request):
            return super().delete_view(request, *args, **kwargs)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


class TeamMembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    verbose_name = "team membership"


@admin.register(Team)
class TeamAdmin(AuditedAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class AuditedUserAdmin(AuditedAdmin, UserAdmin):
    """Django's user admin, with team memberships inline and every creation, change and deletion audited."""

    inlines = [TeamMembershipInline]

    def user_change_password(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with audit_context(actor=request.user, request=request):
            return super().user_change_password(request, *args, **kwargs)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        # Called once per saved change (the password form too), with the names of the changed fields only.
        if message:
            services.audit_record(
                actor=request.user, action="user.change", target=obj, request=request, after={"changes": message}
            )
        return super().log_change(request, obj, message)


@admin.register(FarmAccount)
class FarmAccountAdmin(admin.ModelAdmin):
    form = FarmAccountForm
    list_display = ["name", "team", "kind", "access_id", "domain", "platform"]
    list_filter = ["team"]

    def save_model(self, request: HttpRequest, obj: FarmAccount, form: FarmAccountForm, change: bool) -> None:
        key_changed = bool(form.cleaned_data.get("access_key"))
        if change and not key_changed:
            obj.access_key = FarmAccount.objects.get(pk=obj.pk).access_key  # an empty field keeps the stored key
        super().save_model(request, obj, form, change)
        fields = sorted(set(form.changed_data) - {"access_key"}) + (["access_key"] if key_changed else [])
        services.audit_record(
            actor=request.user,
            action="account.change" if change else "account.create",
            target=obj,
            request=request,
            after={"fields": fields},
        )

    def delete_model(self, request: HttpRequest, obj: FarmAccount) -> None:
        services.audit_record(actor=request.user, action="account.delete", target=obj, request=request, before={"name": obj.name})
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:  # "delete selected": one row each
            services.audit_record(
                actor=request.user, action="account.delete", target=obj, request=request, before={"name": obj.name}
            )
        super().delete_queryset(request, queryset)


@admin.register(Manifest)
class ManifestAdmin(ReadOnlyAdmin):
    audit_noun = "manifest"
    list_display = ["name", "account", "entry_count", "total_bytes", "created_by", "created_at"]


@admin.register(TransferJob)
class TransferJobAdmin(ReadOnlyAdmin):
    audit_noun = "job"
    list_display = ["pk", "kind", "status", "account", "files_done", "files_failed", "files_total", "created_by", "created_at"]
    list_filter = ["status", "kind"]

    def has_delete_permission(self, request: HttpRequest, obj: TransferJob | None = None) -> bool:
        return obj is None or obj.is_terminal  # a running job's items are still being written


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Shown, never added, changed or deleted (superusers included); /audit/ is the page to search it."""

    list_display = ["created_at", "actor_name", "action", "target_type", "target_id", "team_id", "outcome", "request_id"]
    list_filter = ["outcome"]
    show_full_result_count = False  # no second COUNT(*) over a million rows
    actions = None

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
