"""Per-sensor sample series in ring buffers, with O(1) sliding-window sums and counts.

A series keeps (time, value) samples of one derived quantity of one sensor (rain increments,
tilt deviation, camera detections), bounded by the longest window any rule asks of it. Sums
use an exclusive prefix sum stored beside each sample, so the sum over any window is one
subtraction; per-window cursors only move forward, so finding a window's start is amortised
O(1). Max, min and delta read the values directly.

The rings are `array('d')`: as compact as numpy's float64 arrays, and reading one element
from Python costs half as much (no numpy scalar is made), which is what the hot path does.
"""

from array import array
from typing import Any, Final

import numpy as np

INITIAL_CAPACITY: Final = 8
# Beyond this many samples inside the longest window the oldest are overwritten: a sensor
# reporting faster than span / MAX_CAPACITY gets approximate windows instead of unbounded memory.
MAX_CAPACITY: Final = 8192
# From this many samples on, numpy's max/min beats the builtin's loop despite its fixed cost.
_NUMPY_EXTREME_FROM: Final = 64

_EMPTY: Final = array("d")


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
        self._ts: array[float] = _EMPTY
        self._val: array[float] | None = _EMPTY if values else None
        self._cum: array[float] | None = _EMPTY if sums else None
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

    @property
    def pushed(self) -> int:
        """Samples ever pushed: the absolute index the next one will get."""
        return self._n

    def push(self, t: float, value: float) -> None:
        """Append a sample, evicting what no window can see any more."""
        if t < self.last_t:
            t = self.last_t
        if self._size == self._cap:
            self._make_room(t)
        n = self._n
        pos = (n + self._off) % self._cap
        self._ts[pos] = t
        val, cum = self._val, self._cum
        if val is not None:
            val[pos] = value
        if cum is not None:
            cum[pos] = self.total
        self.total += value
        self._n = n + 1
        self._size += 1
        self.last_t = t

    def _make_room(self, t: float) -> None:
        oldest = self._n - self._size
        if self._cap and (
            self._ts[(oldest + self._off) % self._cap] <= t - self.span or self._cap >= MAX_CAPACITY
        ):
            self._size -= 1
            return
        capacity = min(MAX_CAPACITY, max(INITIAL_CAPACITY, self._cap + self._cap // 4 + 4))
        self._ts = _grown(self._ordered(self._ts), capacity)
        if self._val is not None:
            self._val = _grown(self._ordered(self._val), capacity)
        if self._cum is not None:
            self._cum = _grown(self._ordered(self._cum), capacity)
        self._cap = capacity
        self._off = (-oldest) % capacity

    def _ordered(self, ring: "array[float]") -> "array[float]":
        # The held samples of one ring, oldest first.
        if not self._size:
            return array("d")
        first = (self._n - self._size + self._off) % self._cap
        end = first + self._size
        return ring[first:end] if end <= self._cap else ring[first:] + ring[: end - self._cap]

    def start(self, window: float, now: float) -> int:
        """Absolute index of the first held sample newer than `now - window`."""
        n = self._n
        first = n - self._size
        index = self._cursors.get(window, first)
        if index < first:
            index = first
        edge = now - window
        ts, cap, off = self._ts, self._cap, self._off
        while index < n and ts[(index + off) % cap] <= edge:
            index += 1
        self._cursors[window] = index
        return index

    def _cum_at(self, index: int) -> float:
        assert self._cum is not None
        return self.total if index >= self._n else self._cum[(index + self._off) % self._cap]

    def newest_at_least(self, limit: float, since: int) -> int:
        """Absolute index of the newest held sample from index `since` on valued >= limit, or -1."""
        val = self._val
        assert val is not None
        cap, off = self._cap, self._off
        for index in range(self._n - 1, max(since, self._n - self._size) - 1, -1):
            if val[(index + off) % cap] >= limit:
                return index
        return -1

    def holds_after(self, index: int, edge: float) -> bool:
        """Whether the sample with absolute index `index` is still held and newer than `edge`."""
        return index >= self._n - self._size and self._ts[(index + self._off) % self._cap] > edge

    def count(self, window: float, now: float) -> int:
        """Samples inside (now - window, now]."""
        return self._n - self.start(window, now)

    def sum(self, window: float, now: float) -> float:
        """Sum of the values inside the window."""
        index = self.start(window, now)
        total = self.total
        cum = self._cum
        assert cum is not None
        return total - (total if index >= self._n else cum[(index + self._off) % self._cap])

    def mean(self, window: float, now: float) -> float | None:
        """Mean of the values inside the window, None when it is empty."""
        index = self.start(window, now)
        count = self._n - index
        return (self.total - self._cum_at(index)) / count if count else None

    def extreme(self, window: float, now: float, *, largest: bool) -> float | None:
        """Max (or min) of the values inside the window, None when it is empty."""
        val = self._val
        assert val is not None
        index = self.start(window, now)
        count = self._n - index
        if count <= 0:
            return None
        first = (index + self._off) % self._cap
        end = first + count
        if count < _NUMPY_EXTREME_FROM:
            parts = [val[first:end]] if end <= self._cap else [val[first:], val[: end - self._cap]]
            found = [max(part) if largest else min(part) for part in parts]
        else:
            # A view of the ring, not a copy; the array's own method: np.max/np.min add a
            # Python dispatch layer that costs more than the reduction.
            ring = np.frombuffer(val)
            views = (
                [ring[first:end]] if end <= self._cap else [ring[first:], ring[: end - self._cap]]
            )
            found = [float(view.max() if largest else view.min()) for view in views]
        return max(found) if largest else min(found)

    def delta(self, window: float, now: float) -> float | None:
        """Newest value minus the oldest inside the window, None when it is empty."""
        val = self._val
        assert val is not None
        index = self.start(window, now)
        if index >= self._n:
            return None
        cap, off = self._cap, self._off
        return val[(self._n - 1 + off) % cap] - val[(index + off) % cap]

    def time_at(self, index: int) -> float:
        """Time of the sample with absolute index `index` (must be held)."""
        return self._ts[(index + self._off) % self._cap]

    def oldest_time(self) -> float | None:
        """Time of the oldest sample held."""
        if not self._size:
            return None
        return self._ts[(self._n - self._size + self._off) % self._cap]

    def rate(self, window: float, smooth: float, now: float) -> float | None:
        """Change per second between the mean of the window's first and last `smooth`.

        None until the series covers the whole window (a rate from a part would overshoot).
        """
        start = self.start(window, now)
        n, size = self._n, self._size
        # oldest_time() and _cum_at() inlined: this runs on every reading of a tilt sensor.
        ts, cap, off = self._ts, self._cap, self._off
        if not size or ts[(n - size + off) % cap] > now - window + smooth or start >= n:
            return None
        early_end = self.start(window - smooth, now)
        late = self.start(smooth, now)
        if early_end <= start or late >= n:
            return None
        cum, total = self._cum, self.total
        assert cum is not None
        at_start = cum[(start + off) % cap]
        at_early_end = total if early_end >= n else cum[(early_end + off) % cap]
        early_mean = (at_early_end - at_start) / (early_end - start)
        late_mean = (total - cum[(late + off) % cap]) / (n - late)
        return (late_mean - early_mean) / (window - smooth)

    def dump(self) -> dict[str, Any]:
        """The samples as JSON-able lists, oldest first."""
        return {
            "span": self.span,
            "memo": self.memo,
            "n": self._n,
            "total": self.total,
            "last_t": self.last_t if self._size else None,
            "ts": self._ordered(self._ts).tolist(),
            "val": None if self._val is None else self._ordered(self._val).tolist(),
            "cum": None if self._cum is None else self._ordered(self._cum).tolist(),
        }

    def load(self, raw: dict[str, Any]) -> None:
        """Replace the samples with a dump from a series of the same shape."""
        ts = array("d", raw["ts"])
        size = len(ts)
        capacity = max(INITIAL_CAPACITY, min(MAX_CAPACITY, size + size // 4 + 4))
        self._ts = _grown(ts[-capacity:], capacity)
        if self._val is not None and raw["val"] is not None:
            self._val = _grown(array("d", raw["val"])[-capacity:], capacity)
        if self._cum is not None and raw["cum"] is not None:
            self._cum = _grown(array("d", raw["cum"])[-capacity:], capacity)
        self._cap = capacity
        self._size = min(size, capacity)
        self._n = int(raw["n"])
        self._off = (-(self._n - self._size)) % capacity
        self._cursors = {}
        self.total = float(raw["total"])
        self.memo = raw.get("memo")
        self.last_t = float("-inf") if raw["last_t"] is None else float(raw["last_t"])


def _grown(ordered: "array[float]", capacity: int) -> "array[float]":
    out = array("d", bytes(8 * capacity))
    out[: len(ordered)] = ordered
    return out
