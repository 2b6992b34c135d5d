from __future__ import annotations

from rest_framework import serializers

from transfers.models import FarmAccount, Manifest, TransferJob
from transfers.progress import JobLive


class FarmAccountSerializer(serializers.ModelSerializer):
    # Write-only: the key goes in encrypted and never comes back out.
    access_key = serializers.CharField(write_only=True, required=False, allow_blank=True, style={"input_type": "password"})
    has_access_key = serializers.SerializerMethodField()

    class Meta:
        model = FarmAccount
        fields = ["id", "name", "kind", "access_id", "access_key", "has_access_key", "domain", "platform", "created_at"]

    def get_has_access_key(self, account: FarmAccount) -> bool:
        return bool(account.access_key)


class ManifestSerializer(serializers.ModelSerializer):
    class Meta:
        model = Manifest
        fields = ["id", "name", "account", "transmit_type", "entry_count", "total_bytes", "created_at"]


class ManifestImportSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    account = serializers.PrimaryKeyRelatedField(queryset=FarmAccount.objects.all())
    transmit_type = serializers.ChoiceField(choices=Manifest.TransmitType.choices, default=Manifest.TransmitType.UPLOAD_JSON)
    file = serializers.FileField()


class JobOptionsSerializer(serializers.Serializer):
    """The SDK's transfer options, with its names and units."""

    pool_size = serializers.IntegerField(min_value=1, max_value=64, required=False)
    max_speed = serializers.IntegerField(min_value=1, required=False, help_text="KB/s, as in the SDK")
    upload_num = serializers.IntegerField(min_value=1, max_value=10, required=False, help_text="attempts per file")
    is_db = serializers.BooleanField(required=False, help_text="skip files unchanged since their last upload")


class TransferJobSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(read_only=True)
    duration = serializers.FloatField(read_only=True)
    average_speed = serializers.FloatField(read_only=True)
    is_terminal = serializers.BooleanField(read_only=True)
    # The page's live state (TransferJob.as_live), the same dict the template and the state messages carry.
    live = serializers.SerializerMethodField()
    files_not_sent = serializers.IntegerField(read_only=True)
    actions = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = TransferJob
        fields = [
            "id", "kind", "status", "is_terminal", "actions", "account", "manifest", "options", "created_at",
            "started_at", "finished_at", "files_total", "files_done", "files_failed", "files_skipped", "files_not_sent",
            "bytes_total", "bytes_done", "bytes_sent", "percent", "duration", "average_speed", "error", "live",
        ]  # fmt: skip
        read_only_fields = fields

    def get_live(self, job: TransferJob) -> JobLive:
        return job.as_live()
