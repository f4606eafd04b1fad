"""Retry timing shared by every retry loop in gridwatch (pure): one policy, one owner."""

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Never wait longer than this for a Retry-After, so a misconfigured peer cannot park us.
MAX_RETRY_AFTER_S = 6 * 3600.0


def backoff_delay(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> float:
    """Seconds before retry number `attempt` (1-based): Retry-After if given, else jittered."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER_S)
    ceiling = min(max_s, base_s * 2.0 ** min(max(attempt - 1, 0), 30))
    # Half fixed, half random: spreads the retries of many clients without ever retrying at once.
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(slots=True)
class Backoff:
    """A retry loop's state: consecutive failures and the delay before the next try."""

    base_s: float
    max_s: float
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self, *, retry_after: float | None = None) -> float:
        """Count a failure and return how long to wait before trying again."""
        self.failures += 1
        return backoff_delay(
            self.failures,
            base_s=self.base_s,
            max_s=self.max_s,
            rng=self.rng,
            retry_after=retry_after,
        )

    def reset(self) -> None:
        """The last try succeeded."""
        self.failures = 0


def parse_retry_after(header: str | None, *, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), None when absent or bad."""
    if header is None:
        return None
    text = header.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)
