from django import forms

from transfers.models import FarmAccount


class ManifestImportForm(forms.Form):
    name = forms.CharField(max_length=200)
    account = forms.ModelChoiceField(queryset=FarmAccount.objects.order_by("name"), label="Farm account")
    file = forms.FileField(label="upload.json", help_text='{"asset": [{"local": "/abs/path", "server": "/D/path"}]}')

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        accounts = list(FarmAccount.objects.order_by("name")[:2])
        if len(accounts) == 1:
            self.fields["account"].initial = accounts[0].pk  # nothing to choose


class FarmAccountForm(forms.ModelForm):
    access_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; never shown again. Leave empty to keep the current key.",
    )

    class Meta:
        model = FarmAccount
        fields = ["name", "kind", "access_id", "access_key", "domain", "platform"]
