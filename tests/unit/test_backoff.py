"""Webhook retry timing."""

import random
from datetime import UTC, datetime

import pytest

from gridwatch.dispatch.backoff import MAX_DELAY_S, parse_retry_after, retry_delay

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 12, 30])
def test_backoff_grows_with_jitter_and_is_capped(attempt):
    ceiling = min(MAX_DELAY_S, 2.0 ** (attempt - 1))
    delays = [retry_delay(attempt, rng=random.Random(seed)) for seed in range(50)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1


def test_retry_after_wins_but_is_bounded():
    rng = random.Random(0)
    assert retry_delay(3, rng=rng, retry_after=7.0) == 7.0
    assert retry_delay(3, rng=rng, retry_after=10**9) == 6 * 3600.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("30", 30.0),
        ("Sat, 21 Nov 2026 12:01:00 GMT", 60.0),
        ("Sat, 21 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
    ],
)
def test_parse_retry_after(header, expected):
    assert parse_retry_after(header, now=NOW) == expected
