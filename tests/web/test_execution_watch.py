"""The worker's watch loop: a database that blinks costs retries, never the results already finished."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from django.db import OperationalError

from transfers.engine.runner import Control
from transfers.execution import RunInterrupted, _watch


class FlakyRecorder:
    """write() fails `failures` times, then stores; nothing is reported while it fails."""

    status = "running"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.writes = 0

    def write(self) -> None:
        self.writes += 1
        if self.failures:
            self.failures -= 1
            raise OperationalError("database is locked")

    def backlog(self) -> int:
        return 1

    def message(self) -> dict:
        return {}


def _done_thread() -> threading.Thread:
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    return thread


def test_the_last_batch_is_written_once_the_database_answers_again(monkeypatch):
    monkeypatch.setattr("transfers.execution._DB_PATIENCE", 5)
    recorder = FlakyRecorder(failures=2)
    lease = SimpleNamespace(lost=threading.Event())

    _watch(SimpleNamespace(pk=1), _done_thread(), recorder, SimpleNamespace(offer=lambda m: None), Control(), lease)

    assert recorder.writes == 3


def test_a_database_down_for_good_fails_the_run_after_its_patience(monkeypatch):
    monkeypatch.setattr("transfers.execution._DB_PATIENCE", 2)
    lease = SimpleNamespace(lost=threading.Event())

    with pytest.raises(OperationalError):
        _watch(SimpleNamespace(pk=1), _done_thread(), FlakyRecorder(failures=10), SimpleNamespace(), Control(), lease)


def test_a_lost_lease_stops_the_run_at_once():
    lease = SimpleNamespace(lost=threading.Event())
    lease.lost.set()
    control = Control()

    with pytest.raises(RunInterrupted, match="lost its lease"):
        _watch(SimpleNamespace(pk=1), _done_thread(), FlakyRecorder(failures=0), SimpleNamespace(), control, lease)
    assert control.stop.is_set()
