from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers

from transfers import selectors
from transfers.models import FarmAccount, Manifest, ManifestEntry, ManifestWork, TransferJob
from transfers.progress import JobLive


def _user(serializer: serializers.BaseSerializer[Any]) -> Any:
    request = serializer.context.get("request")
    return request.user if request is not None else None


class FarmAccountSerializer(serializers.ModelSerializer):
    """A farm account; transfers.accounts.account_save checks and stores it (the same rules as the page)."""

    # Write-only: the key goes in encrypted and never comes back out. Blank on an update keeps the stored key.
    access_key = serializers.CharField(write_only=True, required=False, allow_blank=True, style={"input_type": "password"})
    clear_access_key = serializers.BooleanField(
        write_only=True, required=False, default=False, help_text="true: remove the stored access key"
    )
    has_access_key = serializers.SerializerMethodField()
    # Teams the user can see; whether they may put an account there (lead, staff) is the service's check (403).
    team = serializers.PrimaryKeyRelatedField(queryset=selectors.teams_for(None))
    kind = serializers.CharField(required=False, help_text="a registered farm connector, e.g. local")
    transfer_lines = serializers.JSONField(required=False, help_text='[{"name": "main", "host": "10.0.0.5", "port": 7300}]')
    path_map = serializers.JSONField(required=False, help_text='{"D:/": "/mnt/studio/D/"}: longest prefix wins')
    upload_options = serializers.JSONField(required=False, help_text='default options by the SDK\'s names: {"max_speed": 2048}')
    storage = serializers.JSONField(
        required=False,
        help_text='where a storage farm\'s areas live: sftp {"host", "port", "base_path", "host_key"}, '
        's3 {"endpoint_url", "bucket", "prefix", "region"}; never a secret (that is the access key)',
    )

    class Meta:
        model = FarmAccount
        fields = [
            "id", "name", "team", "kind", "access_id", "access_key", "clear_access_key", "has_access_key", "domain",
            "platform", "transfer_lines", "path_map", "upload_options", "storage", "created_at",
        ]  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = selectors.teams_for(_user(self))

    def get_has_access_key(self, account: FarmAccount) -> bool:
        if "access_key" in account.get_deferred_fields():
            return bool(getattr(account, "key_stored", False))  # annotated by selectors: the key is never decrypted
        return bool(account.access_key)


class CheckStepSerializer(serializers.Serializer):
    name = serializers.CharField()
    ok = serializers.BooleanField()
    message = serializers.CharField(allow_blank=True)


class AccountCheckSerializer(serializers.Serializer):
    """The answer of POST /api/accounts/<id>/check/: every step of the connector's check, in order."""

    ok = serializers.BooleanField()
    steps = CheckStepSerializer(many=True)


class ManifestSerializer(serializers.ModelSerializer):
    team = serializers.IntegerField(source="account.team_id", read_only=True)

    class Meta:
        model = Manifest
        fields = [
            "id", "name", "account", "team", "transmit_type", "state", "entries_stored", "problems", "entry_count",
            "total_bytes", "created_at", "split_from",
        ]  # fmt: skip


class ManifestImportSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    # Accounts the user can see; importing needs the lead role there, which the service checks (403).
    account = serializers.PrimaryKeyRelatedField(queryset=selectors.accounts_for(None))
    transmit_type = serializers.ChoiceField(choices=Manifest.TransmitType.choices, default=Manifest.TransmitType.UPLOAD_JSON)
    file = serializers.FileField(required=False)
    server_path = serializers.CharField(
        required=False, max_length=4096, help_text="instead of `file`: the file on the server, beneath an allowed root"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["account"].queryset = selectors.accounts_for(_user(self))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("file" in attrs) == bool(attrs.get("server_path")):
            raise serializers.ValidationError("give the file (`file`) or its path on the server (`server_path`), one of them")
        return attrs


class JobOptionsSerializer(serializers.Serializer):
    """The SDK's transfer options, with its names and units."""

    pool_size = serializers.IntegerField(min_value=1, max_value=64, required=False)
    max_speed = serializers.IntegerField(min_value=1, max_value=10_485_760, required=False, help_text="KB/s, as in the SDK")
    upload_num = serializers.IntegerField(min_value=1, max_value=10, required=False, help_text="attempts per file")
    is_db = serializers.BooleanField(required=False, help_text="skip files unchanged since their last upload")


class TransferJobSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(read_only=True)
    duration = serializers.FloatField(read_only=True, allow_null=True, help_text="seconds; null until it finishes")
    average_speed = serializers.FloatField(
        read_only=True, allow_null=True, help_text="bytes/s; null: unfinished, or nothing sent"
    )
    is_terminal = serializers.BooleanField(read_only=True)
    # The page's live state (TransferJob.as_live), the same dict the template and the state messages carry.
    live = serializers.SerializerMethodField()
    files_not_sent = serializers.IntegerField(read_only=True)
    actions = serializers.ListField(child=serializers.CharField(), read_only=True)
    team = serializers.IntegerField(source="account.team_id", read_only=True)

    class Meta:
        model = TransferJob
        fields = [
            "id", "kind", "status", "is_terminal", "actions", "account", "team", "manifest", "options", "created_at",
            "started_at", "finished_at", "files_total", "files_done", "files_failed", "files_skipped", "files_not_sent",
            "bytes_total", "bytes_done", "bytes_sent", "percent", "duration", "average_speed", "error", "live",
            "prepared", "items_prepared", "route",
        ]  # fmt: skip
        read_only_fields = fields
        extra_kwargs = {
            "route": {"help_text": "how the last run reaches the farm: transport, line, why, measured connect times (ms)"}
        }

    def get_live(self, job: TransferJob) -> JobLive:
        return job.as_live()


class JobCreateSerializer(serializers.Serializer):
    """POST /api/jobs/: any kind, by the SDK's name, with its options (checked by the kind: 400 names the option)."""

    kind = serializers.ChoiceField(choices=[])
    account = serializers.PrimaryKeyRelatedField(queryset=selectors.accounts_for(None), required=False)
    manifest = serializers.PrimaryKeyRelatedField(queryset=selectors.manifests_for(None), required=False)
    options = serializers.DictField(required=False, default=dict)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from transfers import kinds

        self.fields["kind"].choices = kinds.names()
        self.fields["account"].queryset = selectors.accounts_for(_user(self))
        self.fields["manifest"].queryset = selectors.manifests_for(_user(self))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "account" not in attrs and "manifest" not in attrs:
            raise serializers.ValidationError("give the farm account (or, for an upload, the manifest)")
        return attrs


# --- shapes of answers built by hand (the schema's description of them; the views build the dicts) ---------


class FarmTaskSerializer(serializers.Serializer):
    """A farm task as transfers.api.farm answers it; a parent's frames are its children's."""

    task_id = serializers.IntegerField()
    scene = serializers.CharField()
    layer = serializers.CharField()
    status = serializers.IntegerField(help_text="the farm's status code (SDK §6.1)")
    status_label = serializers.CharField()
    outcome = serializers.CharField()
    terminal = serializers.BooleanField()
    parent_id = serializers.IntegerField(allow_null=True)
    children = serializers.ListField(child=serializers.IntegerField())
    output_folder = serializers.CharField()
    frames_expected = serializers.IntegerField()
    frames_done = serializers.IntegerField()
    updated_at = serializers.DateTimeField()


class FarmTaskListSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    tasks = FarmTaskSerializer(many=True)


class FarmOutputSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="relative to the account's output area")
    size = serializers.IntegerField()
    finished = serializers.BooleanField()


class FarmTaskDetailSerializer(FarmTaskSerializer):
    outputs = FarmOutputSerializer(many=True)


class FarmTokenSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    token = serializers.CharField(help_text="shown in this answer only")
    detail = serializers.CharField()


class MaxSpeedSerializer(serializers.Serializer):
    max_speed = serializers.IntegerField(min_value=1, max_value=10_485_760, allow_null=True, help_text="KB/s; null: no limit")


class ManifestWorkSerializer(serializers.ModelSerializer):
    state_label = serializers.CharField(source="get_state_display", read_only=True)
    manifest_url = serializers.SerializerMethodField()

    class Meta:
        model = ManifestWork
        fields = [
            "id", "manifest", "manifest_url", "kind", "state", "state_label", "params", "done", "total", "result", "error",
            "created_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_manifest_url(self, work: ManifestWork) -> str:
        return reverse("manifest-detail", args=[work.manifest_id])


class ManifestEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = ManifestEntry
        fields = ["number", "local", "server", "size"]
        read_only_fields = fields


class ManifestAppendSerializer(serializers.Serializer):
    """append_to_upload: files and folders on the server (beneath the allowed roots), into the manifest of
    the URL, or {"manifest": id}, or a new manifest {"name", "account"}."""

    paths = serializers.ListField(
        child=serializers.CharField(max_length=4096, trim_whitespace=False), min_length=1, max_length=1000
    )
    manifest = serializers.PrimaryKeyRelatedField(queryset=selectors.manifests_for(None), required=False)
    name = serializers.CharField(max_length=200, required=False)
    account = serializers.PrimaryKeyRelatedField(queryset=selectors.accounts_for(None), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["manifest"].queryset = selectors.manifests_for(_user(self))
        self.fields["account"].queryset = selectors.accounts_for(_user(self))


class ManifestSplitSerializer(serializers.Serializer):
    max_resources_number = serializers.IntegerField(min_value=1, max_value=2**31, help_text="entries per part (cutting_upload)")


class ManifestEntryPageSerializer(serializers.Serializer):
    """GET /api/manifests/<id>/entries/: a keyset page; `next` and `previous` are the cursors to send as
    after= and before=."""

    results = ManifestEntrySerializer(many=True)
    next = serializers.IntegerField(allow_null=True, help_text="send as after= for the next page; null: the last")
    previous = serializers.IntegerField(allow_null=True, help_text="send as before= for the previous page; null: the first")
    searched = serializers.ListField(
        child=serializers.IntegerField(),
        min_length=2,
        max_length=2,
        allow_null=True,
        help_text="a filtered page that ran out of its window: the first and last entry numbers it searched",
    )


class ManifestEntryQuerySerializer(serializers.Serializer):
    """The query parameters of the entries (checked by transfers.forms.EntryFilterForm)."""

    q = serializers.CharField(required=False, max_length=500, help_text="part of the local path")
    folder = serializers.CharField(required=False, max_length=4096, help_text="entries under this local folder")
    ext = serializers.RegexField(r"^\.?[A-Za-z0-9_-]{1,16}$", required=False, help_text="an extension, e.g. exr")
    size_min = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1, help_text="bytes")
    size_max = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1, help_text="bytes")
    uploaded = serializers.ChoiceField(
        choices=["yes", "no"], required=False, allow_blank=True, help_text="yes: the ledger has it; no: it does not"
    )
    after = serializers.IntegerField(required=False, min_value=0, max_value=2**31, help_text="the `next` of a page")
    before = serializers.IntegerField(required=False, min_value=1, max_value=2**31, help_text="the `previous` of a page")


class FolderFileSerializer(serializers.Serializer):
    name = serializers.CharField()
    size = serializers.IntegerField(help_text="bytes")


class FolderListSerializer(serializers.Serializer):
    """GET /api/manifests/folders/: one folder beneath an allowed root (no path: only the roots)."""

    path = serializers.CharField(allow_blank=True, help_text="empty: the roots")
    parent = serializers.CharField(allow_null=True, help_text="null at an allowed root (and with no path)")
    roots = serializers.ListField(child=serializers.CharField())
    folders = serializers.ListField(child=serializers.CharField())
    files = FolderFileSerializer(many=True)
    others = serializers.ListField(child=serializers.CharField(), help_text="symlinks, devices…: shown, never entered")
    more = serializers.IntegerField(help_text="entries past the picker's limit, not listed")


class JobFailureSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    local = serializers.CharField()
    server = serializers.CharField()
    error = serializers.CharField(allow_blank=True)


class JobFailuresSerializer(serializers.Serializer):
    """GET /api/jobs/<id>/failures/: the failed files (the first 1000) and how many failed in all."""

    count = serializers.IntegerField()
    results = JobFailureSerializer(many=True)
