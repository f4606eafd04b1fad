"""Threshold, deviation-from-baseline and rate-of-change conditions: levels with hysteresis."""

from gridwatch.domain import Reading, Severity
from gridwatch.rules.conditions.base import (
    DATA_CHANNELS,
    EPS,
    NUMBERS,
    Evaluator,
    SensorContext,
    SeriesSpec,
    Slot,
    Verdict,
)
from gridwatch.rules.conditions.sources import source_key, value_fn, value_sampler
from gridwatch.rules.models import (
    DeviationCondition,
    RateCondition,
    ThresholdCondition,
    format_duration,
)

_PER = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


class LevelTable:
    """Per-severity limits in one direction, a clear limit, and an optional hold time."""

    __slots__ = ("ascending", "clear", "descending", "for_s", "sign")

    def __init__(
        self, direction: str, levels: dict[Severity, float], clear: float, for_s: float = 0.0
    ) -> None:
        self.sign = 1.0 if direction == "above" else -1.0
        # Signed so that "past the limit" is always >=; EPS so float sums reach exact limits.
        self.ascending = tuple(
            (severity, self.sign * levels[severity] - EPS) for severity in sorted(levels)
        )
        self.descending = tuple(reversed(self.ascending))
        self.clear = self.sign * clear
        self.for_s = for_s

    def level(self, value: float) -> Severity | None:
        """The most severe level `value` is past, if any."""
        signed = self.sign * value
        for severity, limit in self.descending:
            if signed >= limit:
                return severity
        return None

    def held_level(self, since: list[float | None], value: float, t: float) -> Severity | None:
        """The most severe level held for `for_s`, tracking when each level was first met."""
        signed = self.sign * value
        held = None
        for index, (severity, limit) in enumerate(self.ascending):
            if signed >= limit:
                start = since[index]
                if start is None:
                    since[index] = start = t
                if t - start >= self.for_s:
                    held = severity
            else:
                since[index] = None
        return held

    def past_clear(self, value: float) -> bool:
        """True when `value` is on the safe side of the clear limit."""
        return self.sign * value < self.clear


class ThresholdEvaluator(Evaluator):
    """A value past levels (optionally held for a while); clears past the clear limit."""

    def __init__(self, condition: ThresholdCondition | DeviationCondition) -> None:
        self.table = LevelTable(
            condition.direction, condition.levels, condition.clear, condition.for_s
        )
        self.value = value_fn(condition.field, condition.deviation)
        self.name = condition.source_name
        self.hold = condition.for_s > 0
        # Most readings lack most fields: a plain field is looked up inline, no call.
        self.field = condition.field
        self.needs = (
            condition.field if condition.deviation is None else condition.deviation.fields[0]
        )

    def observe(self, slot: Slot, reading: Reading, t: float, ctx: SensorContext) -> Verdict | None:
        if self.field is not None:
            raw = reading.values.get(self.field)
            if raw is None or type(raw) not in NUMBERS:
                return None
            value = float(raw)
        else:
            found = self.value(reading, ctx)
            if found is None:
                return None
            value = found
        table = self.table
        # The common case, inlined: no alarm, no level reached, no hold under way.
        if slot.active is None and slot.state is None:
            if table.sign * value < table.ascending[0][1]:
                return None
            if self.hold:
                slot.state = [None] * len(table.ascending)
        return judge(table, slot, value, t, self.name, None)


def judge(
    table: LevelTable, slot: Slot, value: float, t: float, name: str, window: str | None
) -> Verdict | None:
    """The verdict of a level table on a value; None inside the hysteresis band."""
    if table.for_s > 0:
        if slot.state is None:
            slot.state = [None] * len(table.ascending)
        level = table.held_level(slot.state, value, t)
        if slot.state[0] is None:
            slot.state = None  # nothing under way: an idle sensor keeps no state
    else:
        level = table.level(value)
    if level is not None:
        return Verdict(
            level,
            field=name,
            value=round(value, 6),
            window=window,
            why=_why(table, level, name, value, window),
        )
    if slot.active is not None and table.past_clear(value):
        shown = round(value, 6)
        return Verdict(
            None,
            clear=True,
            field=name,
            value=shown,
            window=window,
            why=f"{name} {shown:g} back past clear {table.sign * table.clear:g}",
        )
    return None


def _why(table: LevelTable, level: Severity, name: str, value: float, window: str | None) -> str:
    limit = next(limit for severity, limit in table.ascending if severity is level)
    sign = "≥" if table.sign > 0 else "≤"
    over = f" over {window}" if window else ""
    held = f" for {format_duration(table.for_s)}" if table.for_s > 0 else ""
    return f"{name}{over} {value:.6g} {sign} {table.sign * (limit + EPS):g}{held} ({level})"


class RateEvaluator(Evaluator):
    """Change per unit of time over a window, smoothed at both ends against noise."""

    channels = DATA_CHANNELS

    def __init__(self, condition: RateCondition) -> None:
        self.table = LevelTable("above", condition.levels, condition.clear)
        self.window = condition.window
        self.smooth = condition.smooth or condition.window / 4
        self.per = _PER[condition.per]
        self.absolute = condition.absolute
        source = value_fn(condition.field, condition.deviation)
        self.key = "rate:" + source_key(condition.field, condition.deviation)
        self.spec = SeriesSpec(
            self.key,
            condition.window,
            values=False,
            sums=True,
            channels=DATA_CHANNELS,
            sample=value_sampler(source),
        )
        self.name = f"{condition.source_name} per {condition.per}"
        self.label = format_duration(condition.window)

    def series_specs(self) -> tuple[SeriesSpec, ...]:
        return (self.spec,)

    def observe(self, slot: Slot, reading: Reading, t: float, ctx: SensorContext) -> Verdict | None:
        series = ctx.get_series(self.key)
        rate = series.rate(self.window, self.smooth, max(t, series.last_t))
        if rate is None:
            return None
        value = abs(rate) * self.per if self.absolute else rate * self.per
        return judge(self.table, slot, value, t, self.name, self.label)
