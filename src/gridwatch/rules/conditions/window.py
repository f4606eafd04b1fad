"""Sliding-window aggregates over several windows at once, and counts of matching events."""

from collections.abc import Callable
from typing import Any

from gridwatch.domain import Channel, Reading, Severity, Value
from gridwatch.rules.conditions.base import (
    DATA_CHANNELS,
    EPS,
    Evaluator,
    SensorContext,
    SeriesSpec,
    Slot,
    Verdict,
    number,
)
from gridwatch.rules.conditions.sources import increment_key, increment_sampler
from gridwatch.rules.models import CountCondition, WindowCondition, format_duration
from gridwatch.rules.models.common import compile_predicate
from gridwatch.rules.windows import Series

# Without new samples these aggregates can only fall, so an idle "above" rule can skip work.
_MONOTONE = frozenset({"sum", "count", "max"})


class _Level:
    __slots__ = ("clear", "label", "limit", "position", "severity", "sign", "window")

    def __init__(
        self, severity: Severity, window: float, limit: float, sign: float, clear: float
    ) -> None:
        self.severity = severity
        self.window = window
        self.position = 0  # of its window in WindowEvaluator.windows
        self.label = format_duration(window)
        self.sign = sign
        self.limit = sign * limit - EPS
        self.clear = sign * clear


def _count(series: Series, window: float, now: float) -> float:
    return float(series.count(window, now))


def _max(series: Series, window: float, now: float) -> float | None:
    return series.extreme(window, now, largest=True)


def _min(series: Series, window: float, now: float) -> float | None:
    return series.extreme(window, now, largest=False)


_AGGREGATES: dict[str, Callable[[Series, float, float], float | None]] = {
    "sum": Series.sum,
    "count": _count,
    "mean": Series.mean,
    "max": _max,
    "min": _min,
    "delta": Series.delta,
}


class WindowEvaluator(Evaluator):
    """The aggregate over each level's window; the most severe level met wins."""

    channels = DATA_CHANNELS

    def __init__(self, condition: WindowCondition) -> None:
        self.aggregate = condition.aggregate
        self.measure = _AGGREGATES[condition.aggregate]
        self.key = "win:" + increment_key(condition.field, condition.counter, condition.filter)
        levels = []
        for level in condition.levels:
            sign = 1.0 if level.above is not None else -1.0
            limit = level.above if level.above is not None else level.below
            assert limit is not None
            clear = limit * condition.clear_ratio if sign > 0 else limit / condition.clear_ratio
            levels.append(_Level(level.severity, level.window, limit, sign, clear))
        # Most severe first, so the first level met is the answer.
        self.levels = tuple(sorted(levels, key=lambda level: level.severity, reverse=True))
        self.windows = tuple(sorted({level.window for level in levels}))
        for entry in self.levels:
            entry.position = self.windows.index(entry.window)
        self.skip_idle = self.aggregate in _MONOTONE and all(lv.sign > 0 for lv in levels)
        # A window's max reaches a limit only if one of its samples does: while no sample
        # inside the longest window reaches the lowest limit, an idle rule has nothing to do.
        self.peak_limit = (
            min(level.limit for level in levels)
            if self.aggregate == "max" and self.skip_idle
            else None
        )
        self.longest = max(level.window for level in levels)
        self.spec = SeriesSpec(
            self.key,
            max(self.windows),
            values=self.aggregate in ("max", "min", "delta"),
            sums=self.aggregate in ("sum", "mean"),
            channels=DATA_CHANNELS,
            sample=increment_sampler(condition.field, condition.counter, condition.filter),
        )
        self.name = condition.field

    def series_specs(self) -> tuple[SeriesSpec, ...]:
        return (self.spec,)

    def observe(self, slot: Slot, reading: Reading, t: float, ctx: SensorContext) -> Verdict | None:
        series = ctx.get_series(self.key)
        last_t = series.last_t
        now = t if t > last_t else last_t
        if self.skip_idle and slot.active is None:
            if last_t < t:
                return None
            if self.peak_limit is not None and not self._may_peak(slot, series, now):
                return None
        measure = self.measure
        # A loop, not a comprehension (a function call of its own on 3.11): this runs for
        # every reading of every sensor.
        found: list[float | None] = []
        for window in self.windows:
            found.append(measure(series, window, now))  # noqa: PERF401
        for level in self.levels:
            value = found[level.position]
            if value is not None and level.sign * value >= level.limit:
                return self._verdict(level.severity, level, found)
        if slot.active is None:
            return None
        for level in self.levels:
            value = found[level.position]
            if value is not None and level.sign * value >= level.clear:
                return None  # still inside the hysteresis band of some level
        return self._verdict(None, None, found)

    def _may_peak(self, slot: Slot, series: Series, now: float) -> bool:
        # The slot remembers the newest sample that reached peak_limit and how far it looked,
        # so each reading scans only the samples pushed since. A new series (rules reloaded)
        # starts the search again.
        assert self.peak_limit is not None
        state = slot.state
        if state is None or state[0] is not series:
            state = slot.state = [series, 0, -1]
        found = series.newest_at_least(self.peak_limit, state[1])
        if found >= 0:
            state[2] = found
        state[1] = series.pushed
        hit: int = state[2]
        return hit >= 0 and series.holds_after(hit, now - self.longest)

    def dump_state(self, state: Any) -> Any:
        return None  # only _may_peak's memo, rebuilt from the series after a restore

    def _verdict(
        self, severity: Severity | None, level: _Level | None, found: list[float | None]
    ) -> Verdict:
        values: dict[str, Value] = {
            f"{self.aggregate}_{format_duration(w)}": round(v, 6)
            for w, v in zip(self.windows, found, strict=True)
            if v is not None
        }
        if level is None:
            return Verdict(
                None,
                clear=True,
                field=self.name,
                values=values,
                why=f"{self.name} {self.aggregate} back under every level",
            )
        value = round(found[level.position] or 0.0, 6)
        sign = "≥" if level.sign > 0 else "≤"
        why = (
            f"{self.name} {self.aggregate} over {level.label} {value:g} {sign} "
            f"{level.sign * (level.limit + EPS):g} ({severity})"
        )
        return Verdict(
            severity,
            field=f"{self.aggregate}_{level.label}",
            value=value,
            values=values,
            window=level.label,
            why=why,
        )


class CountEvaluator(Evaluator):
    """How many matching readings fell inside the window; clears as they age out."""

    channels = frozenset({Channel.EVENT, Channel.TELEMETRY})
    timed = True

    def __init__(self, condition: CountCondition) -> None:
        self.window = condition.window
        self.label = format_duration(condition.window)
        self.levels = tuple(sorted(condition.levels.items(), key=lambda i: i[0], reverse=True))
        self.clear = condition.clear
        predicate = compile_predicate(condition.when)
        min_confidence, confidence_field = condition.min_confidence, condition.confidence_field

        def sample(reading: Reading, ctx: SensorContext, series: Series) -> float | None:
            values = reading.values
            for name, allowed in predicate:
                if values.get(name) not in allowed:
                    return None
            if min_confidence > 0:
                confidence = number(values, confidence_field)
                if confidence is None or confidence < min_confidence:
                    return None
            return 1.0

        self.key = f"count:{sorted(condition.when.items(), key=str)}>{min_confidence}"
        self.spec = SeriesSpec(
            self.key,
            condition.window,
            values=False,
            sums=False,
            channels=self.channels,
            sample=sample,
        )
        self.name = "count(" + ",".join(f"{k}={v}" for k, v in condition.when.items()) + ")"

    def series_specs(self) -> tuple[SeriesSpec, ...]:
        return (self.spec,)

    def observe(self, slot: Slot, reading: Reading, t: float, ctx: SensorContext) -> Verdict | None:
        series = ctx.get_series(self.key)
        if series.last_t < t and slot.active is None:
            return None
        return self._judge(slot, series, max(t, series.last_t))

    def tick(self, slot: Slot, now: float, ctx: SensorContext) -> Verdict | None:
        return self._judge(slot, ctx.get_series(self.key), now)

    def _judge(self, slot: Slot, series: Series, now: float) -> Verdict | None:
        start = series.start(self.window, now)
        count = series.count(self.window, now)
        # Look again when the oldest counted reading leaves the window.
        slot.due = series.time_at(start) + self.window if count else None
        for severity, limit in self.levels:
            if count >= limit:
                return Verdict(
                    severity,
                    field=self.name,
                    value=count,
                    window=self.label,
                    why=f"{self.name} {count} in {self.label} ≥ {limit} ({severity})",
                )
        if slot.active is not None and count <= self.clear:
            slot.due = None
            return Verdict(
                None,
                clear=True,
                field=self.name,
                value=count,
                window=self.label,
                why=f"{self.name} {count} in {self.label} ≤ {self.clear}",
            )
        return None

    def dump_state(self, state: Any) -> Any:
        return None
