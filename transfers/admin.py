"""Admin: users, teams and credentials are managed here; transfers and audit rows are read-only."""

from django.contrib import admin
from django.http import HttpRequest

from transfers import services
from transfers.forms import FarmAccountForm
from transfers.models import AuditEvent, FarmAccount, Manifest, TransferJob

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


@admin.register(FarmAccount)
class FarmAccountAdmin(admin.ModelAdmin):
    form = FarmAccountForm
    list_display = ["name", "kind", "access_id", "domain", "platform"]

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


@admin.register(Manifest)
class ManifestAdmin(ReadOnlyAdmin):
    list_display = ["name", "account", "entry_count", "total_bytes", "created_by", "created_at"]


@admin.register(TransferJob)
class TransferJobAdmin(ReadOnlyAdmin):
    list_display = ["pk", "kind", "status", "account", "files_done", "files_failed", "files_total", "created_by", "created_at"]
    list_filter = ["status", "kind"]

    def has_delete_permission(self, request: HttpRequest, obj: TransferJob | None = None) -> bool:
        return obj is None or obj.is_terminal  # a running job's items are still being written


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "target_type", "target_id", "outcome", "request_id"]
    list_filter = ["action", "outcome"]

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
