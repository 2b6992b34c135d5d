"""Key rotation: a key stored under the old Fernet key reads after a new key is put first; rotate_keys
re-encrypts it so that the old key can be dropped; the command never prints a secret."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from transfers.models import FarmAccount

pytestmark = pytest.mark.django_db

SECRET = "farm-access-key-27182818"


def _raw(account: FarmAccount) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_key FROM transfers_farmaccount WHERE id = %s", [account.pk])
        return str(cursor.fetchone()[0])


def test_rotate_keys_moves_every_stored_key_to_the_first_key(settings, make_account):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CREDENTIAL_KEYS = [old]
    account = make_account(access_key=SECRET)
    keyless = make_account(access_key="")
    settings.CREDENTIAL_KEYS = [new, old]
    assert FarmAccount.objects.get(pk=account.pk).access_key == SECRET  # the old key still reads
    before = _raw(account)

    out = StringIO()
    call_command("rotate_keys", stdout=out)

    assert _raw(account) != before
    assert Fernet(new.encode()).decrypt(_raw(account).encode()).decode() == SECRET
    settings.CREDENTIAL_KEYS = [new]  # the old key dropped
    assert FarmAccount.objects.get(pk=account.pk).access_key == SECRET
    assert FarmAccount.objects.get(pk=keyless.pk).access_key == ""
    assert "transfers.FarmAccount.access_key: 1 re-encrypted" in out.getvalue()
    assert SECRET not in out.getvalue()


def test_without_rotation_dropping_the_old_key_leaves_the_value_unreadable(settings, make_account):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CREDENTIAL_KEYS = [old]
    account = make_account(access_key=SECRET)
    settings.CREDENTIAL_KEYS = [new]

    with pytest.raises(ImproperlyConfigured, match="no configured credential key decrypts it"):
        FarmAccount.objects.get(pk=account.pk)
