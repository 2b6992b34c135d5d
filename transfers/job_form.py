"""One form for every job kind: the kind (from the registry), the account or manifest it needs (from
the selectors), and the kind's options, generated from its msgspec struct (names, types, defaults and
the descriptions as help). The form only collects text; the kind's own parse checks it, as for the API,
and its OptionsInvalid becomes the error of the option it names.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import msgspec.inspect as mi
from django import forms

from transfers import kinds, selectors
from transfers.models import Manifest

_CHOICES_SHOWN = 200


def _peel(kind: mi.Type) -> tuple[mi.Type, str, bool]:
    """The type under its metadata and optionality: (type, description, optional)."""
    description, optional = "", False
    while True:
        if isinstance(kind, mi.Metadata):
            description = description or str((kind.extra_json_schema or {}).get("description", ""))
            kind = kind.type
        elif isinstance(kind, mi.UnionType):
            members = [member for member in kind.types if not isinstance(member, mi.NoneType)]
            optional = optional or len(members) < len(kind.types)
            if len(members) != 1:
                return mi.UnionType(tuple(members)), description, optional
            kind = members[0]
        else:
            return kind, description, optional


def _bare(kind: mi.Type) -> mi.Type:
    while isinstance(kind, mi.Metadata):
        kind = kind.type
    return kind


class OptionField:
    """How one option is asked for and read back: a form field, and its text made into JSON."""

    def __init__(self, info: mi.Field) -> None:
        self.name = info.name
        self.type, help_text, optional = _peel(info.type)
        default = None if info.default in (msgspec.NODEFAULT, None) else info.default
        self.required = info.required
        self.shape = "text"
        common: dict[str, Any] = {"label": self.name, "help_text": help_text, "required": False}
        kind = self.type
        if isinstance(kind, mi.BoolType):
            self.shape = "bool"
            self.field: forms.Field = forms.BooleanField(initial=bool(default), **common)
        elif isinstance(kind, mi.LiteralType):
            self.shape = "int" if all(isinstance(v, int) for v in kind.values) else "text"
            choices = [("", "—")] if optional else []
            self.field = forms.ChoiceField(choices=choices + [(str(v), str(v)) for v in kind.values], initial=default, **common)
        elif isinstance(kind, mi.IntType):
            self.shape = "int"
            self.field = forms.IntegerField(min_value=kind.ge, max_value=kind.le, initial=default, **common)
        elif isinstance(kind, mi.FloatType):
            self.shape = "float"
            self.field = forms.FloatField(min_value=kind.ge, max_value=kind.le, initial=default, **common)
        elif isinstance(kind, mi.ListType) and isinstance(_bare(kind.item_type), mi.IntType):
            self.shape = "ints"
            common["help_text"] = f"{help_text} (numbers, separated by spaces or commas)".strip()
            self.field = forms.CharField(**common)
        elif isinstance(kind, mi.ListType | mi.UnionType):
            self.shape = "lines"  # a list of paths, or a path or a list of them: one per line
            common["help_text"] = f"{help_text} (one per line)".strip()
            self.field = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), **common)
        else:
            self.field = forms.CharField(initial=default, **common)
        if self.required:
            self.field.label = f"{self.name} (required)"

    def value(self, cleaned: Any) -> tuple[bool, Any]:
        """(given, the JSON value): an empty optional field is left out, so the struct's default applies."""
        if self.shape == "bool":
            return True, bool(cleaned)
        if cleaned in (None, ""):
            return False, None
        if self.shape == "int" and isinstance(cleaned, str):
            return True, int(cleaned)
        if self.shape == "ints":
            parts = [part for part in re.split(r"[\s,]+", str(cleaned)) if part]
            numbers = []
            for part in parts:
                if not part.isdigit():
                    raise forms.ValidationError(f"{part[:20]!r} is not a number")
                numbers.append(int(part))
            return True, numbers
        if self.shape == "lines":
            lines = [line.strip() for line in str(cleaned).splitlines() if line.strip()]
            single = isinstance(self.type, mi.UnionType) and len(lines) == 1  # a path, or a list of them
            return bool(lines), lines[0] if single else lines
        return True, cleaned


class JobForm(forms.Form):
    """Start a job of any kind: the kind, its account or manifest, and its options."""

    kind = forms.ChoiceField(label="Kind")

    def __init__(self, data: Any = None, *, user: Any, kind: str | None = None) -> None:
        super().__init__(data)
        names = kinds.names()
        choice = self.fields["kind"]
        assert isinstance(choice, forms.ChoiceField)
        choice.choices = [(name, f"{name}: {kinds.get(name).label}") for name in names]
        chosen = (data or {}).get("kind") or kind
        self.job_kind = kinds.get(chosen if chosen in names else names[0])
        choice.initial = self.job_kind.name
        if self.job_kind.uses_manifest:
            ready = selectors.manifests_for(user, action="run").filter(state=Manifest.State.READY).order_by("-pk")
            self.fields["manifest"] = forms.ModelChoiceField(
                queryset=ready, label="Manifest", help_text="a ready manifest of a team where you start jobs"
            )
            ids = list(ready.values_list("pk", flat=True)[:_CHOICES_SHOWN])
            self.fields["manifest"].queryset = ready.filter(pk__in=ids)  # type: ignore[attr-defined]
        else:
            self.fields["account"] = forms.ModelChoiceField(
                queryset=selectors.accounts_for(user, action="run"), label="Farm account"
            )
        self.options = [OptionField(info) for info in mi.type_info(self.job_kind.Options).fields]  # type: ignore[attr-defined]
        for option in self.options:
            self.fields[option.name] = option.field

    def option_names(self) -> list[str]:
        return [option.name for option in self.options]

    def raw_options(self) -> dict[str, Any]:
        """The options as JSON for the kind's parse; ValidationError names a field that is not even text of its type."""
        chosen: dict[str, Any] = {}
        for option in self.options:
            try:
                given, value = option.value(self.cleaned_data.get(option.name))
            except forms.ValidationError as exc:
                self.add_error(option.name, exc)
                continue
            if given:
                chosen[option.name] = value
        return chosen

    def refused(self, exc: kinds.OptionsInvalid) -> None:
        """The kind's refusal, on the option it names (`pool_size: expected ...`), else on the form."""
        where, _, reason = str(exc).partition(": ")
        name = re.split(r"[\[.]", where, maxsplit=1)[0]  # config_file_list[0]: ... is config_file_list's
        if name in self.fields and reason:
            self.add_error(name, reason)
        else:
            self.add_error(None, str(exc))
