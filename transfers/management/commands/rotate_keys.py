"""Re-encrypt every stored secret (EncryptedTextField) with the first key of RVWEB_CREDENTIAL_KEYS.

Rotation: put a new key first in RVWEB_CREDENTIAL_KEYS (keeping the old ones after it), restart, run this
command, then drop the old keys. Values are only decrypted in memory; none is printed."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from transfers.fields import EncryptedTextField

_BATCH = 500


class Command(BaseCommand):
    help = "Re-encrypt every stored credential with the first key of RVWEB_CREDENTIAL_KEYS (after prepending a new key)."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model in apps.get_models():
            fields = [field.name for field in model._meta.get_fields() if isinstance(field, EncryptedTextField)]
            for name in fields:
                count = 0
                rows = model._default_manager.exclude(**{name: ""}).exclude(**{f"{name}__isnull": True})
                pks = list(rows.values_list("pk", flat=True))
                for start in range(0, len(pks), _BATCH):
                    with transaction.atomic():
                        for pk, value in model._default_manager.filter(pk__in=pks[start : start + _BATCH]).values_list(
                            "pk", name
                        ):
                            # Decrypted with whichever configured key fits, written back under the first one.
                            model._default_manager.filter(pk=pk).update(**{name: value})
                            count += 1
                self.stdout.write(f"{model._meta.label}.{name}: {count} re-encrypted")
                total += count
        self.stdout.write(self.style.SUCCESS(f"{total} stored secrets now use the first credential key."))
