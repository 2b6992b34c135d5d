"""RateMeter: speed over the last few seconds and the ETA it implies, on a clock the test moves."""

from __future__ import annotations

import pytest

from tests.clock import FakeClock
from transfers.engine.meter import RateMeter


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _feed(meter: RateMeter, clock: FakeClock, samples: list[tuple[float, int]]) -> None:
    for seconds, total in samples:
        clock.now = 1000.0 + seconds
        meter.add(total)


def test_speed_is_zero_before_any_sample(clock: FakeClock) -> None:
    assert RateMeter(clock=clock).speed() == 0.0


def test_speed_is_zero_with_a_single_sample(clock: FakeClock) -> None:
    meter = RateMeter(clock=clock)
    _feed(meter, clock, [(0, 500)])

    assert meter.speed() == 0.0


def test_speed_is_zero_when_samples_share_one_instant(clock: FakeClock) -> None:
    meter = RateMeter(clock=clock)
    _feed(meter, clock, [(0, 0), (0, 500)])

    assert meter.speed() == 0.0


def test_speed_is_bytes_per_second_between_the_samples(clock: FakeClock) -> None:
    meter = RateMeter(clock=clock)
    _feed(meter, clock, [(0, 0), (1, 100), (2, 200), (4, 400)])

    assert meter.speed() == pytest.approx(100.0)


def test_speed_forgets_samples_older_than_the_window(clock: FakeClock) -> None:
    meter = RateMeter(window=5.0, clock=clock)
    fast = [(t, t * 1000) for t in range(6)]  # 1000 B/s for 5 s
    slow = [(t, 5000 + (t - 5) * 100) for t in range(6, 16)]  # then 100 B/s for 10 s
    _feed(meter, clock, fast + slow)

    assert meter.speed() == pytest.approx(100.0)


def test_speed_keeps_two_samples_after_a_long_pause(clock: FakeClock) -> None:
    meter = RateMeter(window=5.0, clock=clock)
    _feed(meter, clock, [(0, 0), (1, 100), (61, 700)])

    assert meter.speed() == pytest.approx(10.0)


def test_eta_is_none_at_zero_speed(clock: FakeClock) -> None:
    meter = RateMeter(clock=clock)
    _feed(meter, clock, [(0, 100), (3, 100)])

    assert meter.eta(1000) is None


def test_eta_is_the_remaining_bytes_over_the_speed(clock: FakeClock) -> None:
    meter = RateMeter(clock=clock)
    _feed(meter, clock, [(0, 0), (2, 400)])

    assert meter.eta(1000) == pytest.approx(5.0)
