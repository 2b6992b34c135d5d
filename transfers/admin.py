from django.contrib import admin
from django.http import HttpRequest

from transfers.forms import FarmAccountForm
from transfers.models import AuditEvent, FarmAccount, Manifest, TransferJob


@admin.register(FarmAccount)
class FarmAccountAdmin(admin.ModelAdmin):
    form = FarmAccountForm
    list_display = ["name", "kind", "access_id", "domain", "platform"]

    def save_model(self, request: HttpRequest, obj: FarmAccount, form: FarmAccountForm, change: bool) -> None:
        if change and not form.cleaned_data.get("access_key"):
            obj.access_key = FarmAccount.objects.get(pk=obj.pk).access_key  # empty field keeps the stored key
        super().save_model(request, obj, form, change)


@admin.register(Manifest)
class ManifestAdmin(admin.ModelAdmin):
    list_display = ["name", "account", "entry_count", "total_bytes", "created_by", "created_at"]


@admin.register(TransferJob)
class TransferJobAdmin(admin.ModelAdmin):
    list_display = ["pk", "kind", "status", "account", "files_done", "files_failed", "files_total", "created_by", "created_at"]
    list_filter = ["status", "kind"]
    readonly_fields = [f.name for f in TransferJob._meta.fields]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor", "action", "target_type", "target_id", "outcome", "request_id"]
    list_filter = ["action", "outcome"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
