"""transfers.progress: throttled, coalesced progress (latest wins) and best-effort publishing."""

from __future__ import annotations

import logging
import time

import pytest

from tests.clock import FakeClock
from transfers import progress
from transfers.progress import JobProgress, ProgressThrottle, publish_state

JOB = 7


def _message(bytes_done: int) -> JobProgress:
    return JobProgress(
        type="job.progress", job=JOB, status="running", files_total=10, files_done=bytes_done // 10, files_failed=0,
        bytes_total=1000, bytes_done=bytes_done, speed=0.0, eta=None,
    )  # fmt: skip


@pytest.fixture
def sent(monkeypatch) -> list[tuple[tuple[str, ...], dict]]:
    """Every message that reaches the channel layer door, with the groups it goes to."""
    messages: list[tuple[tuple[str, ...], dict]] = []
    monkeypatch.setattr(progress, "_send", lambda groups, message: messages.append((groups, dict(message))))
    return messages


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


def test_the_first_offer_is_sent_at_once(sent, clock):
    throttle = ProgressThrottle(JOB, per_second=4, clock=clock)

    assert throttle.offer(_message(10)) is True
    assert [m["bytes_done"] for _, m in sent] == [10]


def test_progress_goes_to_the_job_group_its_teams_dashboard_and_the_staffs(sent, clock):
    ProgressThrottle(JOB, team_id=3, per_second=4, clock=clock).offer(_message(10))

    assert [groups for groups, _ in sent] == [(f"job.{JOB}", "team.3", progress.STAFF_GROUP)]


def test_progress_of_a_job_of_no_known_team_goes_to_the_staffs_dashboard_only(sent, clock):
    ProgressThrottle(JOB, per_second=4, clock=clock).offer(_message(10))

    assert [groups for groups, _ in sent] == [(f"job.{JOB}", progress.STAFF_GROUP)]


def test_the_dashboards_get_progress_at_their_own_pace_latest_wins(sent, clock):
    throttle = ProgressThrottle(JOB, team_id=3, per_second=10, dashboard_per_second=2, clock=clock)

    for step in range(100):  # one offer every 10 ms for one second
        clock.now = 100.0 + step * 0.01
        throttle.offer(_message(step))
    throttle.flush()

    to_team = [m["bytes_done"] for groups, m in sent if "team.3" in groups]
    to_page = [m["bytes_done"] for groups, m in sent if f"job.{JOB}" in groups]
    assert to_team == [0, 50, 99]  # two a second, and the last one offered at the end
    assert len(to_page) == 11 and to_page[-1] == 99
    assert all(progress.STAFF_GROUP in groups for groups, _ in sent if "team.3" in groups)


def test_the_dashboards_are_never_sent_progress_faster_than_the_page(clock, settings):
    settings.DASHBOARD_MAX_PER_SECOND = 20

    assert ProgressThrottle(JOB, per_second=4, clock=clock)._dashboards.interval == pytest.approx(0.25)


def test_state_and_watch_messages_go_to_the_dashboards_too(sent):
    publish_state(JOB, status="running", team_id=3)
    progress.publish_watch(JOB, {"tasks": [], "next_poll_at": None, "error": ""}, team_id=3)

    assert [groups for groups, _ in sent] == [(f"job.{JOB}", "team.3", progress.STAFF_GROUP)] * 2


def test_every_message_is_stamped_with_its_send_time(monkeypatch):
    got: list[dict] = []

    class Layer:
        async def group_send(self, group: str, message: dict) -> None:
            got.append(message)

    monkeypatch.setattr(progress, "get_channel_layer", lambda *alias: Layer())
    monkeypatch.setattr(progress, "_quiet_until", 0.0)
    before = time.time()

    publish_state(JOB, status="running", team_id=3)

    assert len(got) == 3 and all(before <= m["sent_at"] <= time.time() for m in got)


def test_at_most_per_second_messages_are_sent_each_second(sent, clock):
    throttle = ProgressThrottle(JOB, per_second=4, clock=clock)

    for step in range(100):  # one offer every 10 ms for one second
        clock.now = 100.0 + step * 0.01
        throttle.offer(_message(step))

    assert len(sent) == 4


def test_an_offer_within_the_interval_is_held_not_sent(sent, clock):
    throttle = ProgressThrottle(JOB, per_second=2, clock=clock)
    throttle.offer(_message(10))
    clock.now += 0.1

    assert throttle.offer(_message(20)) is False
    assert len(sent) == 1


def test_an_offer_after_the_interval_is_sent(sent, clock):
    throttle = ProgressThrottle(JOB, per_second=2, clock=clock)
    throttle.offer(_message(10))
    clock.now += 0.5

    assert throttle.offer(_message(20)) is True
    assert [m["bytes_done"] for _, m in sent] == [10, 20]


def test_the_latest_held_message_wins_on_flush(sent, clock):
    throttle = ProgressThrottle(JOB, per_second=2, clock=clock)
    throttle.offer(_message(10))
    for bytes_done in (20, 30, 40):
        clock.now += 0.1
        throttle.offer(_message(bytes_done))

    throttle.flush()

    assert [m["bytes_done"] for _, m in sent] == [10, 40]


def test_flush_sends_the_held_message_only_once(sent, clock):
    throttle = ProgressThrottle(JOB, per_second=2, clock=clock)
    throttle.offer(_message(10))
    clock.now += 0.1
    throttle.offer(_message(20))

    throttle.flush()
    throttle.flush()

    assert [m["bytes_done"] for _, m in sent] == [10, 20]


def test_flush_sends_nothing_when_nothing_is_held(sent, clock):
    throttle = ProgressThrottle(JOB, per_second=2, clock=clock)
    throttle.offer(_message(10))

    throttle.flush()

    assert [m["bytes_done"] for _, m in sent] == [10]


def test_flush_sends_nothing_before_any_offer(sent, clock):
    ProgressThrottle(JOB, per_second=2, clock=clock).flush()

    assert sent == []


def test_a_send_after_the_interval_drops_the_older_held_message(sent, clock):
    throttle = ProgressThrottle(JOB, per_second=2, clock=clock)
    throttle.offer(_message(10))
    clock.now += 0.1
    throttle.offer(_message(20))
    clock.now += 0.5
    throttle.offer(_message(30))

    throttle.flush()

    assert [m["bytes_done"] for _, m in sent] == [10, 30]


def test_the_rate_defaults_to_the_setting(sent, clock, settings):
    settings.PROGRESS_MAX_PER_SECOND = 2

    assert ProgressThrottle(JOB, clock=clock).interval == pytest.approx(0.5)


def test_state_changes_are_never_throttled(sent):
    for status in ("running", "completed"):
        publish_state(JOB, status=status)

    assert [m for _, m in sent] == [
        {"type": "job.state", "job": JOB, "status": "running"},
        {"type": "job.state", "job": JOB, "status": "completed"},
    ]


class BrokenLayer:
    async def group_send(self, group: str, message: dict) -> None:
        raise ConnectionError("redis is down")


@pytest.fixture
def broken_layer(monkeypatch) -> None:
    monkeypatch.setattr(progress, "get_channel_layer", lambda *alias: BrokenLayer())


def test_publishing_a_state_survives_a_channel_layer_that_raises(broken_layer, caplog):
    with caplog.at_level(logging.WARNING, logger="transfers.progress"):
        publish_state(JOB, status="running")

    assert "not published" in caplog.text


def test_offering_progress_survives_a_channel_layer_that_raises(broken_layer, clock):
    assert ProgressThrottle(JOB, per_second=2, clock=clock).offer(_message(10)) is True
