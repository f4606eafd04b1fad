"""The ring-buffer series against a plain list, over wide random inputs."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridwatch.rules.windows import MAX_CAPACITY, Series

steps = st.lists(
    st.tuples(st.floats(0, 400, allow_nan=False), st.floats(-50, 50, allow_nan=False)),
    min_size=1,
    max_size=200,
)


def _naive(samples: list[tuple[float, float]], window: float, now: float) -> list[float]:
    return [value for t, value in samples if t > now - window]


@settings(max_examples=150, deadline=None)
@given(steps=steps, window=st.floats(1, 3000))
def test_window_aggregates_match_a_plain_list(steps, window):
    series = Series(3000.0, values=True, sums=True)
    samples: list[tuple[float, float]] = []
    t = 0.0
    for gap, value in steps:
        t += gap
        series.push(t, value)
        samples.append((t, value))
        inside = _naive(samples, window, t)
        assert series.count(window, t) == len(inside)
        assert math.isclose(series.sum(window, t), sum(inside), abs_tol=1e-6)
        assert series.extreme(window, t, largest=True) == (max(inside) if inside else None)
        assert series.extreme(window, t, largest=False) == (min(inside) if inside else None)
        expected_delta = inside[-1] - inside[0] if inside else None
        assert series.delta(window, t) == expected_delta


@pytest.mark.parametrize("window", [10.0, 63.0, 64.0, 100.0, 250.0])
def test_max_and_min_agree_on_both_sides_of_the_numpy_cut_over(window):
    # Span 250 over 400 pushes: the ring has wrapped, so some windows straddle its end.
    series = Series(250.0, values=True, sums=False)
    samples = [(float(t), float((t * 37) % 101)) for t in range(400)]
    for t, value in samples:
        series.push(t, value)
    inside = _naive(samples, window, 399.0)
    assert series.extreme(window, 399.0, largest=True) == max(inside)
    assert series.extreme(window, 399.0, largest=False) == min(inside)


def test_old_samples_are_evicted_and_memory_stays_bounded():
    series = Series(600.0, values=False, sums=True)
    for minute in range(10_000):
        series.push(minute * 60.0, 1.0)
    assert len(series) <= 16  # ten minutes of minute samples, plus growth slack
    assert series.sum(600.0, 9_999 * 60.0) == 10.0


def test_capacity_is_capped_for_sensors_faster_than_their_window():
    series = Series(1e9, values=False, sums=False)
    for second in range(MAX_CAPACITY + 100):
        series.push(float(second), 1.0)
    assert len(series) == MAX_CAPACITY


def test_a_late_sample_counts_at_the_newest_time():
    series = Series(100.0, values=True, sums=True)
    series.push(50.0, 1.0)
    series.push(10.0, 2.0)  # older than the last one: taken as arriving at 50
    assert series.count(30.0, 50.0) == 2


@pytest.mark.parametrize(("slope", "noise"), [(0.5, 0.0), (-0.2, 0.0), (1.0, 0.05)])
def test_rate_compares_the_smoothed_ends_of_the_window(slope, noise):
    series = Series(3600.0, values=False, sums=True)
    for minute in range(120):
        wobble = noise if minute % 2 else -noise
        series.push(minute * 60.0, slope * minute / 60 + wobble)
    rate = series.rate(3600.0, 900.0, 119 * 60.0)
    assert rate is not None
    assert math.isclose(rate * 3600, slope, rel_tol=0.1)


def test_rate_needs_the_whole_window():
    series = Series(3600.0, values=False, sums=True)
    for minute in range(30):
        series.push(minute * 60.0, float(minute))
    assert series.rate(3600.0, 900.0, 29 * 60.0) is None


def test_dump_and_load_round_trip():
    series = Series(300.0, values=True, sums=True)
    for second in range(0, 1000, 7):
        series.push(float(second), second / 10)
    copy = Series(300.0, values=True, sums=True)
    copy.load(series.dump())
    assert copy.sum(300.0, 994.0) == pytest.approx(series.sum(300.0, 994.0))
    assert copy.extreme(300.0, 994.0, largest=True) == series.extreme(300.0, 994.0, largest=True)
    copy.push(1001.0, 5.0)
    series.push(1001.0, 5.0)
    assert copy.sum(300.0, 1001.0) == pytest.approx(series.sum(300.0, 1001.0))
