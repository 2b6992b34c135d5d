from typing import Any

from django import forms

from transfers import selectors
from transfers.models import FarmAccount, Manifest


class ManifestImportForm(forms.Form):
    """Import a manifest into one of the farm accounts the user manages (a lead's team's, or any for staff)."""

    name = forms.CharField(max_length=200)
    account = forms.ModelChoiceField(queryset=selectors.accounts_for(None), label="Farm account")  # set per user
    transmit_type = forms.ChoiceField(
        choices=Manifest.TransmitType.choices, initial=Manifest.TransmitType.UPLOAD_JSON, required=False
    )

    def clean_transmit_type(self) -> str:
        return self.cleaned_data.get("transmit_type") or Manifest.TransmitType.UPLOAD_JSON

    file = forms.FileField(
        label="File",
        required=False,
        help_text='upload.json: {"asset": [{"local": "/abs/path", "server": "/D/path"}]} — '
        "upload list: one absolute file or folder path per line (.txt or .json)",
    )
    server_path = forms.CharField(
        label="Or a path on the server",
        required=False,
        max_length=4096,
        help_text="The upload.json or upload list, as an absolute path beneath an allowed root.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("file")) == bool(data.get("server_path")):
            raise forms.ValidationError("Choose a file from this computer or name one on the server (one of them).")
        return data

    def __init__(self, *args: object, user: Any, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        field = self.fields["account"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = selectors.accounts_for(user, action="manage")
        self._choices = list(field.queryset[:2])
        if len(self._choices) == 1:
            field.initial = self._choices[0].pk  # nothing to choose

    def may_import(self) -> bool:
        return bool(self._choices)


class FarmAccountForm(forms.ModelForm):  # type: ignore[type-arg]
    access_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; never shown again. Leave empty to keep the current key.",
    )

    class Meta:
        model = FarmAccount
        fields = ["name", "team", "kind", "access_id", "access_key", "domain", "platform", "path_map"]
        help_texts = {"path_map": 'Where this machine finds the manifests\' local paths, e.g. {"D:/": "/mnt/studio/D/"}.'}


class UploadOptionsForm(forms.Form):
    """The SDK's upload_asset options, with its names and units."""

    max_speed = forms.IntegerField(required=False, min_value=1, label="max_speed (KB/s)", help_text="Empty: no limit.")
    pool_size = forms.IntegerField(required=False, min_value=1, max_value=64, initial=4, label="pool_size (files at once)")
    is_db = forms.BooleanField(required=False, initial=True, label="is_db: skip files unchanged since their last upload")

    def options(self) -> dict[str, object]:
        data = self.cleaned_data
        chosen = {"pool_size": data.get("pool_size") or 4, "is_db": bool(data.get("is_db"))}
        if data.get("max_speed"):
            chosen["max_speed"] = data["max_speed"]
        return chosen


class SpeedForm(forms.Form):
    max_speed = forms.IntegerField(required=False, min_value=1, label="max_speed (KB/s)", help_text="Empty: no limit.")


class DownloadForm(forms.Form):
    """The SDK's download options, with its names: which kind, which tasks, where, and what an existing file means."""

    kind = forms.ChoiceField(
        choices=[
            ("auto_download", "auto_download: each frame as soon as it is rendered"),
            ("auto_download_after_task_completed", "auto_download_after_task_completed: once each task has ended"),
            ("download", "download: what is rendered now, once"),
        ],
        initial="auto_download",
    )
    task_id_list = forms.TypedMultipleChoiceField(coerce=int, widget=forms.CheckboxSelectMultiple, label="Tasks")
    local_path = forms.CharField(
        required=False, max_length=4096, help_text="A folder under an allowed local root. Empty: renderfarm_sdk, as the SDK."
    )
    download_filename_format = forms.BooleanField(
        required=False, initial=True, label="download_filename_format: keep each task's <task_id>_<scene> folder"
    )
    conflict = forms.ChoiceField(
        choices=[
            ("skip_identical", "skip an identical local file, replace one that differs"),
            ("keep_both", "keep a local file that differs, write beside it as name (2)"),
            ("overwrite", "always overwrite"),
        ],
        initial="skip_identical",
        label="A local file of the same name",
    )
    sleep_time = forms.FloatField(
        required=False, min_value=0.2, max_value=3600, initial=10, label="sleep_time (s between listings)"
    )
    max_speed = forms.IntegerField(required=False, min_value=1, label="max_speed (KB/s)", help_text="Empty: no limit.")

    def __init__(self, *args: object, task_ids: list[int], labels: dict[int, str] | None = None, **kwargs: object) -> None:
        """`labels`: what the page shows beside each task id (its scene and status), so tasks can be told apart."""
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        field = self.fields["task_id_list"]
        assert isinstance(field, forms.TypedMultipleChoiceField)
        labels = labels or {}
        field.choices = [(task_id, f"{task_id} {labels[task_id]}" if task_id in labels else str(task_id)) for task_id in task_ids]

    def options(self) -> dict[str, object]:
        """The kind's options in the SDK's names (checked again, and typed, by the kind)."""
        data = self.cleaned_data
        chosen: dict[str, object] = {
            "task_id_list": data["task_id_list"],
            "download_filename_format": "true" if data.get("download_filename_format") else "false",
            "conflict": data["conflict"],
        }
        for name in ("local_path", "max_speed"):
            if data.get(name):
                chosen[name] = data[name]
        if data["kind"] != "download" and data.get("sleep_time"):
            chosen["sleep_time"] = data["sleep_time"]
        return chosen


_PAGE_OPTIONS = ("max_speed", "pool_size", "upload_num")  # the default options the page shows


class AccountEditForm(forms.Form):
    """A farm account as its lead edits it on the page; transfers.accounts.account_save checks the rest."""

    name = forms.CharField(max_length=100)
    team = forms.ModelChoiceField(queryset=selectors.teams_for(None), help_text="A team you lead.")  # set per user
    kind = forms.ChoiceField(choices=[], label="Kind")  # the registered connectors (transfers.farm.CONNECTORS)
    access_id = forms.CharField(max_length=200, required=False, label="Access id")
    access_key = forms.CharField(
        required=False,
        label="Access key",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again. Leave empty to keep the stored key.",
    )
    clear_key = forms.BooleanField(required=False, label="Clear the stored key")
    domain = forms.CharField(max_length=200, required=False)
    platform = forms.CharField(max_length=10, required=False)
    transfer_lines = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Transfer lines",
        help_text="One a line: name host:port, e.g. main 10.0.0.5:7300",
    )
    path_map = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Path mapping",
        help_text="One rule a line: the manifests' prefix => where this machine finds it, e.g. D:/ => /mnt/studio/D/",
    )
    max_speed = forms.IntegerField(required=False, label="Default max_speed (KB/s)", help_text="Empty: no limit.")
    pool_size = forms.IntegerField(required=False, label="Default pool_size (files at once)")
    upload_num = forms.IntegerField(required=False, label="Default upload_num (attempts per file)")

    def __init__(self, *args: object, user: Any, account: FarmAccount | None = None, **kwargs: object) -> None:
        from transfers.farm import kind_choices

        if account is not None and not args and "initial" not in kwargs:
            kwargs["initial"] = self.initial_of(account)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        stored = account.upload_options if account is not None else {}
        self._other_options = {key: value for key, value in (stored or {}).items() if key not in _PAGE_OPTIONS}
        team = self.fields["team"]
        assert isinstance(team, forms.ModelChoiceField)
        team.queryset = selectors.teams_for(user, role="lead")
        choices = kind_choices()
        if account is not None and account.kind not in dict(choices):
            choices.append((account.kind, account.get_kind_display()))  # kept as it is; no connector yet
        self.fields["kind"].choices = choices  # type: ignore[attr-defined]
        self._add_storage_fields(account)

    def _add_storage_fields(self, account: FarmAccount | None) -> None:
        """One field per storage setting of each registered kind (`storage_<kind>_<setting>`), shown in a
        fieldset of its kind; only the chosen kind's are saved."""
        from transfers.farm import CONNECTORS

        stored = (account.storage or {}) if account is not None else {}
        self._account = account
        self.storage_kinds: list[tuple[str, list[str]]] = []
        for kind, connector in sorted(CONNECTORS.items()):
            names = []
            for setting in connector.storage_settings:
                name = f"storage_{kind}_{setting.name}"
                field: forms.Field
                if setting.integer:
                    field = forms.IntegerField(required=False, min_value=setting.minimum, max_value=setting.maximum)
                else:
                    field = forms.CharField(required=False, max_length=4096, strip=True)
                field.label, field.help_text = setting.label, setting.help
                if account is not None and account.kind == kind and setting.name in stored:
                    field.initial = stored[setting.name]
                elif setting.default not in (None, ""):
                    field.initial = setting.default
                self.fields[name] = field
                names.append(name)
                if setting.learned:  # the value as the page showed it: left so, a value learned since is kept
                    self.fields[f"shown_{kind}_{setting.name}"] = forms.CharField(
                        required=False, widget=forms.HiddenInput, initial=field.initial or ""
                    )
            if names:
                self.storage_kinds.append((kind, names))

    def general_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if not name.startswith(("storage_", "shown_"))]

    def storage_fieldsets(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [(kind, [self[name] for name in names]) for kind, names in self.storage_kinds]

    @staticmethod
    def initial_of(account: FarmAccount) -> dict[str, Any]:
        options = account.upload_options or {}
        return {
            "name": account.name,
            "team": account.team_id,
            "kind": account.kind,
            "access_id": account.access_id,
            "domain": account.domain,
            "platform": account.platform,
            "transfer_lines": "\n".join(f"{ln['name']} {ln['host']}:{ln['port']}" for ln in account.transfer_lines or []),
            "path_map": "\n".join(f"{prefix} => {target}" for prefix, target in (account.path_map or {}).items()),
            **{key: options.get(key) for key in _PAGE_OPTIONS},
        }

    def data_for_save(self) -> dict[str, Any]:
        """What account_save takes; the lines and rules as structures (a text that does not parse: a form error)."""
        from transfers.accounts import lines_parsed

        data = self.cleaned_data
        chosen: dict[str, Any] = {key: data[key] for key in ("name", "team", "kind", "access_id", "domain", "platform")}
        try:
            chosen["transfer_lines"] = lines_parsed(data["transfer_lines"])
        except ValueError as exc:
            self.add_error("transfer_lines", str(exc))
        rules: dict[str, str] = {}
        for number, row in enumerate((r.strip() for r in data["path_map"].splitlines()), start=1):
            if row:
                prefix, arrow, target = row.partition("=>")
                if not arrow:
                    self.add_error("path_map", f"line {number}: write it as `prefix => target`")
                rules[prefix.strip()] = target.strip()
        chosen["path_map"] = rules
        given = {key: data[key] for key in _PAGE_OPTIONS if data[key] is not None}
        chosen["upload_options"] = {**self._other_options, **given}  # the ones only the API sets are kept
        prefix = f"storage_{data['kind']}_"
        storage = {name[len(prefix) :]: value for name, value in data.items() if name.startswith(prefix)}
        account = self._account
        if account is not None and account.kind == data["kind"]:
            for setting, value in list(storage.items()):
                shown = f"shown_{data['kind']}_{setting}"
                # Left as the page showed it, while rvweb learned it meanwhile (a host key pinned on first use):
                # the stored value stays. Changed on the page (emptied on purpose, say): the page's value.
                if shown in data and (value or "") == (data[shown] or ""):
                    storage[setting] = (account.storage or {}).get(setting, value)
        chosen["storage"] = {name: value for name, value in storage.items() if value not in (None, "")}
        return chosen


class NotificationSettingsForm(forms.Form):
    """A user's own notifications: email, webhook, which events (transfers.notifications checks the rest)."""

    email = forms.BooleanField(required=False, label="Email me (to my user's email address)")
    webhook_url = forms.CharField(
        required=False,
        max_length=500,
        label="Webhook URL",
        help_text="http:// or https://; rvweb POSTs JSON with an X-Rvweb-Signature header: sha256= and the hex "
        "HMAC-SHA256 of the body, keyed by your webhook secret.",
    )
    new_secret = forms.BooleanField(required=False, label="Make a new webhook secret (the old one stops working)")
    events = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple, label="Tell me when")

    def __init__(self, *args: object, **kwargs: object) -> None:
        from transfers.models import NotificationSettings

        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["events"].choices = NotificationSettings.Event.choices  # type: ignore[attr-defined]


class EntryFilterForm(forms.Form):
    """Filters of a manifest's entries (page and API alike); an empty field filters nothing."""

    q = forms.CharField(required=False, max_length=500, label="Search", help_text="Part of the local path.")
    folder = forms.CharField(required=False, max_length=4096, help_text="Entries under this local folder.")
    ext = forms.RegexField(
        required=False,
        regex=r"^\.?[A-Za-z0-9_-]{1,16}$",
        label="Extension",
        error_messages={"invalid": "An extension is 1 to 16 letters, digits, - or _ (e.g. exr)."},
    )
    size_min = forms.IntegerField(required=False, min_value=0, max_value=2**63 - 1, label="Size from (bytes)")
    size_max = forms.IntegerField(required=False, min_value=0, max_value=2**63 - 1, label="Size to (bytes)")
    uploaded = forms.ChoiceField(
        required=False,
        choices=[("", "either"), ("yes", "yes: the ledger has it"), ("no", "no: not in the ledger")],
        label="Already uploaded",
    )
    after = forms.IntegerField(required=False, min_value=0, max_value=2**31, widget=forms.HiddenInput)
    before = forms.IntegerField(required=False, min_value=1, max_value=2**31, widget=forms.HiddenInput)

    def clean_ext(self) -> str:
        return str(self.cleaned_data.get("ext") or "").lstrip(".")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        low, high = data.get("size_min"), data.get("size_max")
        if low is not None and high is not None and low > high:
            self.add_error("size_max", "The upper size is below the lower one.")
        if data.get("after") is not None and data.get("before") is not None:
            raise forms.ValidationError("Page after an entry or before one, not both.")
        return data

    def filtering(self) -> bool:
        """Whether any filter narrows the entries (then a page searches a window at a time)."""
        data = self.cleaned_data
        return any(data.get(name) not in (None, "") for name in ("q", "folder", "ext", "size_min", "size_max", "uploaded"))


class SplitForm(forms.Form):
    max_resources_number = forms.IntegerField(
        min_value=1, max_value=2**31, label="max_resources_number (entries per part)", help_text="cutting_upload"
    )
