"""EncryptedTextField: a secret stored encrypted at rest (MultiFernet), decrypted only in memory.

Keys come from settings.CREDENTIAL_KEYS, newest first; a value encrypted under an older key still
reads, and is re-encrypted with the newest key on its next save.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@lru_cache(maxsize=4)
def _cipher(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured("RVWEB_CREDENTIAL_KEYS: each key must be a url-safe base64 32-byte Fernet key") from None


def cipher() -> MultiFernet:
    return _cipher(tuple(settings.CREDENTIAL_KEYS))


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    description = "Text encrypted at rest"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        try:
            return str(cipher().decrypt(value.encode()).decode())
        except InvalidToken:
            raise ImproperlyConfigured(f"{self.model.__name__}.{self.name}: no configured credential key decrypts it") from None

    def get_prep_value(self, value: Any) -> str | None:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return None if value is None else ""
        return cipher().encrypt(str(value).encode()).decode()
