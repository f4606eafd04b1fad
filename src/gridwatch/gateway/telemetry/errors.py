"""How a telemetry backend fails: for now (retry, spool) or for good (the points are refused)."""


class StoreUnavailable(Exception):  # noqa: N818 - reads as a condition, like TimeoutError
    """The store cannot take writes now (down, 5xx, timeout, 429); the same write may later."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        self.reason = reason
        self.retry_after = retry_after
        suffix = "" if retry_after is None else f" (retry after {retry_after:g}s)"
        super().__init__(reason + suffix)


class PointsRejected(Exception):  # noqa: N818 - the store's verdict, not a malfunction
    """The store refused the batch itself (a 4xx): retrying it unchanged would fail again."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"HTTP {status}: {reason}")
