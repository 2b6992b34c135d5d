"""The upload ledger in the database: look-ups in batches, upserts, one account and area at a time."""

from __future__ import annotations

import pytest

from transfers.engine.ledger import LedgerRecord
from transfers.ledger import DbLedger

pytestmark = pytest.mark.django_db


def _record(n: int, size: int = 10) -> LedgerRecord:
    return LedgerRecord(server=f"D/f{n}.exr", local=f"/s/f{n}.exr", size=size, mtime_ns=n, checksum=f"xxh3-128:{n:032x}")


def test_a_thousand_records_come_back_from_batched_lookups(make_account):
    ledger = DbLedger(account_id=make_account(name="a").pk, area="input")
    ledger.record([_record(n) for n in range(1200)])

    found = ledger.lookup([f"D/f{n}.exr" for n in range(1300)])

    assert len(found) == 1200
    assert found["D/f7.exr"] == _record(7)


def test_recording_a_path_again_replaces_its_record(make_account):
    ledger = DbLedger(account_id=make_account(name="a").pk, area="input")
    ledger.record([_record(1)])

    ledger.record([_record(1, size=99)])

    assert ledger.lookup(["D/f1.exr"])["D/f1.exr"].size == 99


def test_records_of_another_account_or_area_are_not_seen(make_account):
    first, second = make_account(name="a"), make_account(name="b")
    DbLedger(account_id=first.pk, area="input").record([_record(1)])

    assert DbLedger(account_id=second.pk, area="input").lookup(["D/f1.exr"]) == {}
    assert DbLedger(account_id=first.pk, area="output").lookup(["D/f1.exr"]) == {}


def test_sparse_lookups_among_many_other_records_find_exactly_theirs(make_account):
    ledger = DbLedger(account_id=make_account(name="a").pk, area="input")
    ledger.record([_record(n) for n in range(3000)])
    wanted = [f"D/f{n}.exr" for n in range(0, 3000, 40)] + ["D/missing.exr"]  # a span holding ~40x more rows

    found = ledger.lookup(wanted)

    assert set(found) == set(wanted) - {"D/missing.exr"}
    assert found["D/f40.exr"] == _record(40)


def test_lookups_of_non_ascii_and_mixed_case_paths_find_each_record(make_account):
    ledger = DbLedger(account_id=make_account(name="a").pk, area="input")
    names = [f"D/{prefix}{n}.exr" for prefix in ("Z", "a", "é", "日本", "z ", "A-") for n in range(20)]
    ledger.record([LedgerRecord(server=name, local="/s/" + name, size=1, mtime_ns=1, checksum="c") for name in names])
    ledger.record([LedgerRecord(server=f"E/{n}", local="/x", size=1, mtime_ns=1, checksum="c") for n in range(50)])

    found = ledger.lookup([*names, "D/zz.exr"])

    assert sorted(found) == sorted(names)
    assert found["D/é3.exr"].local == "/s/D/é3.exr"
