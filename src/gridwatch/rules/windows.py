"""Per-sensor sample series in numpy ring buffers, with O(1) sliding-window sums and counts.

A series keeps (time, value) samples of one derived quantity of one sensor (rain increments,
tilt deviation, camera detections), bounded by the longest window any rule asks of it. Sums
use an exclusive prefix sum stored beside each sample, so the sum over any window is one
subtraction; per-window cursors only move forward, so finding a window's start is amortised
O(1). Max, min and delta read the values directly.
"""

from typing import Any, Final

import numpy as np
import numpy.typing as npt

INITIAL_CAPACITY: Final = 8
# Beyond this many samples inside the longest window the oldest are overwritten: a sensor
# reporting faster than span / MAX_CAPACITY gets approximate windows instead of unbounded memory.
MAX_CAPACITY: Final = 8192

_Array = npt.NDArray[np.float64]
_EMPTY: _Array = np.empty(0)


class Series:
    """A time-ordered ring of samples; a sample older than the newest counts as the newest."""

    __slots__ = (
        "_cap",
        "_cum",
        "_cursors",
        "_n",
        "_off",
        "_size",
        "_ts",
        "_val",
        "last_t",
        "memo",
        "span",
        "total",
    )

    def __init__(self, span: float, *, values: bool, sums: bool) -> None:
        self.span = span
        # Arrays are allocated at the first push: many series (snow on a rain gauge) stay empty.
        self._cap = 0
        self._ts: _Array = _EMPTY
        self._val: _Array | None = _EMPTY if values else None
        self._cum: _Array | None = _EMPTY if sums else None
        self._n = 0  # samples ever pushed: the absolute index of the next one
        self._size = 0  # samples held
        self._off = 0  # ring position of absolute index i is (i + _off) % _cap
        self._cursors: dict[float, int] = {}
        self.total = 0.0  # sum of every value ever pushed
        self.last_t = float("-inf")
        self.memo: float | None = None  # the sampler's own memory (a counter's last value)

    def fits(self, *, values: bool, sums: bool) -> bool:
        """Whether this series keeps what a spec with these needs asks for."""
        return (self._val is not None) == values and (self._cum is not None) == sums

    def __len__(self) -> int:
        return self._size

    def push(self, t: float, value: float) -> None:
        """Append a sample, evicting what no window can see any more."""
        t = max(t, self.last_t)
        if self._size == self._cap:
            self._make_room(t)
        pos = (self._n + self._off) % self._cap
        self._ts[pos] = t
        if self._val is not None:
            self._val[pos] = value
        if self._cum is not None:
            self._cum[pos] = self.total
        self.total += value
        self._n += 1
        self._size += 1
        self.last_t = t

    def _make_room(self, t: float) -> None:
        oldest = self._n - self._size
        if self._cap and (
            self._ts[(oldest + self._off) % self._cap] <= t - self.span or self._cap >= MAX_CAPACITY
        ):
            self._size -= 1
            return
        order = self._order()
        capacity = min(MAX_CAPACITY, max(INITIAL_CAPACITY, self._cap + self._cap // 4 + 4))
        self._ts = _grown(self._ts[order], capacity)
        if self._val is not None:
            self._val = _grown(self._val[order], capacity)
        if self._cum is not None:
            self._cum = _grown(self._cum[order], capacity)
        self._cap = capacity
        self._off = (-oldest) % capacity

    def _order(self) -> npt.NDArray[np.intp]:
        oldest = self._n - self._size
        return (np.arange(oldest, self._n) + self._off) % max(self._cap, 1)

    def start(self, window: float, now: float) -> int:
        """Absolute index of the first held sample newer than `now - window`."""
        first = self._n - self._size
        index = max(self._cursors.get(window, first), first)
        edge = now - window
        ts, cap, off, n = self._ts, self._cap, self._off, self._n
        while index < n and ts[(index + off) % cap] <= edge:
            index += 1
        self._cursors[window] = index
        return index

    def _cum_at(self, index: int) -> float:
        assert self._cum is not None
        return self.total if index >= self._n else float(self._cum[(index + self._off) % self._cap])

    def count(self, window: float, now: float) -> int:
        """Samples inside (now - window, now]."""
        return self._n - self.start(window, now)

    def sum(self, window: float, now: float) -> float:
        """Sum of the values inside the window."""
        return self.total - self._cum_at(self.start(window, now))

    def mean(self, window: float, now: float) -> float | None:
        """Mean of the values inside the window, None when it is empty."""
        index = self.start(window, now)
        count = self._n - index
        return (self.total - self._cum_at(index)) / count if count else None

    def extreme(self, window: float, now: float, *, largest: bool) -> float | None:
        """Max (or min) of the values inside the window, None when it is empty."""
        assert self._val is not None
        index = self.start(window, now)
        if index >= self._n:
            return None
        first, last = (index + self._off) % self._cap, (self._n - 1 + self._off) % self._cap
        parts = (
            [self._val[first : last + 1]]
            if first <= last
            else [self._val[first:], self._val[: last + 1]]
        )
        # The array's own method: np.max/np.min add a Python dispatch layer that costs more
        # than the reduction over a window's few samples.
        found = [float(part.max() if largest else part.min()) for part in parts]
        return max(found) if largest else min(found)

    def delta(self, window: float, now: float) -> float | None:
        """Newest value minus the oldest inside the window, None when it is empty."""
        assert self._val is not None
        index = self.start(window, now)
        if index >= self._n:
            return None
        val, cap, off = self._val, self._cap, self._off
        return float(val[(self._n - 1 + off) % cap] - val[(index + off) % cap])

    def time_at(self, index: int) -> float:
        """Time of the sample with absolute index `index` (must be held)."""
        return float(self._ts[(index + self._off) % self._cap])

    def oldest_time(self) -> float | None:
        """Time of the oldest sample held."""
        if not self._size:
            return None
        return float(self._ts[(self._n - self._size + self._off) % self._cap])

    def rate(self, window: float, smooth: float, now: float) -> float | None:
        """Change per second between the mean of the window's first and last `smooth`.

        None until the series covers the whole window (a rate from a part would overshoot).
        """
        start = self.start(window, now)
        oldest = self.oldest_time()
        if oldest is None or oldest > now - window + smooth or start >= self._n:
            return None
        early_end = self.start(window - smooth, now)
        late = self.start(smooth, now)
        if early_end <= start or late >= self._n:
            return None
        early_mean = (self._cum_at(early_end) - self._cum_at(start)) / (early_end - start)
        late_mean = (self.total - self._cum_at(late)) / (self._n - late)
        return (late_mean - early_mean) / (window - smooth)

    def dump(self) -> dict[str, Any]:
        """The samples as JSON-able lists, oldest first."""
        order = self._order()
        return {
            "span": self.span,
            "memo": self.memo,
            "n": self._n,
            "total": self.total,
            "last_t": self.last_t if self._size else None,
            "ts": self._ts[order].tolist(),
            "val": None if self._val is None else self._val[order].tolist(),
            "cum": None if self._cum is None else self._cum[order].tolist(),
        }

    def load(self, raw: dict[str, Any]) -> None:
        """Replace the samples with a dump from a series of the same shape."""
        ts = np.asarray(raw["ts"], dtype=np.float64)
        size = len(ts)
        capacity = max(INITIAL_CAPACITY, min(MAX_CAPACITY, size + size // 4 + 4))
        self._ts = _grown(ts[-capacity:], capacity)
        if self._val is not None and raw["val"] is not None:
            self._val = _grown(np.asarray(raw["val"], dtype=np.float64)[-capacity:], capacity)
        if self._cum is not None and raw["cum"] is not None:
            self._cum = _grown(np.asarray(raw["cum"], dtype=np.float64)[-capacity:], capacity)
        self._cap = capacity
        self._size = min(size, capacity)
        self._n = int(raw["n"])
        self._off = (-(self._n - self._size)) % capacity
        self._cursors = {}
        self.total = float(raw["total"])
        self.memo = raw.get("memo")
        self.last_t = float("-inf") if raw["last_t"] is None else float(raw["last_t"])


def _grown(ordered: _Array, capacity: int) -> _Array:
    out = np.empty(capacity)
    out[: len(ordered)] = ordered
    return out
