"""The task status table (reference/sdk-spec.md §6.1): every code's meaning, unknown codes, task trees."""

from __future__ import annotations

import logging

import pytest

from transfers.farm import status
from transfers.farm.status import NoLeafTasks, Outcome, is_failed, is_finished, is_terminal, is_unknown, status_of, tree_ended

# code: (terminal, terminal with is_test_stop, finished, failed) — the SDK's terminal set is
# {10, 20, 23, 25, 30, 35, 45} (+40 with is_test_stop); 15, 50 and 100 crash the SDK.
TABLE = {
    0: (False, False, False, False),
    5: (False, False, False, False),
    8: (False, False, False, False),
    10: (True, True, False, False),
    15: (True, True, False, False),
    20: (True, True, False, False),
    23: (True, True, False, False),
    25: (True, True, True, False),
    30: (True, True, True, True),
    35: (True, True, False, False),
    40: (False, True, False, False),
    45: (True, True, False, True),
    50: (False, False, False, False),
    100: (False, False, False, False),
}


@pytest.mark.parametrize("code", sorted(TABLE))
def test_each_known_code_means_what_the_spec_says(code):
    terminal, terminal_test_stop, finished, failed = TABLE[code]

    assert (is_terminal(code), is_terminal(code, is_test_stop=True), is_finished(code), is_failed(code)) == (
        terminal,
        terminal_test_stop,
        finished,
        failed,
    )
    assert not is_unknown(code)
    assert status_of(code).label


def test_the_table_knows_exactly_the_codes_of_the_spec():
    assert set(status.STATUSES) == set(TABLE)


def test_the_sdk_terminal_set_plus_the_user_stop_is_the_terminal_set():
    assert {10, 15, 20, 23, 25, 30, 35, 45} == status.TERMINAL_CODES


@pytest.mark.parametrize("code", [7, 99, -1, None, "25", 25.0, True])
def test_an_unknown_code_is_logged_and_not_finished(code, caplog):
    with caplog.at_level(logging.WARNING, logger="transfers.farm.status"):
        info = status_of(code)

    assert info.outcome is Outcome.UNKNOWN
    assert not info.terminal(is_test_stop=True) and not info.finished and not info.failed
    assert is_unknown(code)
    assert f"unknown task status code {code!r}" in caplog.text


def test_a_tree_has_ended_when_every_leaf_has():
    assert tree_ended([25, 30, 45])
    assert not tree_ended([25, 5])
    assert not tree_ended([25, 40])
    assert tree_ended([25, 40], is_test_stop=True)


def test_a_leaf_with_an_unknown_code_keeps_its_tree_running():
    assert not tree_ended([25, 77])


def test_a_tree_without_leaves_is_an_error_not_an_endless_wait():
    with pytest.raises(NoLeafTasks):
        tree_ended([])
