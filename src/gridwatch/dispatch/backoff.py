"""Retry timing for webhook deliveries (pure)."""

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

BASE_DELAY_S = 1.0
MAX_DELAY_S = 3600.0
# Never wait longer than this for a Retry-After, so a misconfigured receiver cannot park events.
MAX_RETRY_AFTER_S = 6 * 3600.0


def retry_delay(attempt: int, *, rng: random.Random, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1`: Retry-After if given, else jittered backoff."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER_S)
    ceiling = min(MAX_DELAY_S, BASE_DELAY_S * 2.0 ** max(attempt - 1, 0))
    # Half fixed, half random: spreads retries of many events without ever retrying at once.
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def parse_retry_after(header: str | None, *, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), None when absent or bad."""
    if header is None:
        return None
    text = header.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)
