"""Retry timing for webhook deliveries: the shared backoff policy with the relay's bounds."""

import random

from gridwatch.domain.backoff import MAX_RETRY_AFTER_S, backoff_delay, parse_retry_after

__all__ = ["BASE_DELAY_S", "MAX_DELAY_S", "MAX_RETRY_AFTER_S", "parse_retry_after", "retry_delay"]

BASE_DELAY_S = 1.0
MAX_DELAY_S = 3600.0


def retry_delay(attempt: int, *, rng: random.Random, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1`: Retry-After if given, else jittered backoff."""
    return backoff_delay(
        attempt, base_s=BASE_DELAY_S, max_s=MAX_DELAY_S, rng=rng, retry_after=retry_after
    )
