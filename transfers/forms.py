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
        help_text='upload.json: {"asset": [{"local": "/abs/path", "server": "/D/path"}]} — '
        "upload list: one absolute file or folder path per line (.txt or .json)",
    )

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


class FarmAccountForm(forms.ModelForm):
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
