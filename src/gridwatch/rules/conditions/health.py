"""Device-health conditions: offline (deadman), stuck value, out of range, clock skew."""

from typing import Any

from gridwatch.domain import Channel, Reading
from gridwatch.rules.conditions.base import (
    ALL_CHANNELS,
    DATA_CHANNELS,
    NUMBERS,
    Evaluator,
    SensorContext,
    Slot,
    Verdict,
    number,
)
from gridwatch.rules.models import (
    ClockSkewCondition,
    DeadmanCondition,
    RangeCondition,
    StuckCondition,
    format_duration,
)

_STATUS = Channel.STATUS


class DeadmanEvaluator(Evaluator):
    """Silence longer than k reporting intervals, or an `offline` status, raises.

    Time here is arrival time: the question is whether messages still reach us.
    """

    channels = ALL_CHANNELS
    timed = True

    def __init__(self, condition: DeadmanCondition) -> None:
        self.intervals = condition.intervals
        self.offline_status = condition.offline_status
        self.severity = condition.severity

    def observe(self, slot: Slot, reading: Reading, t: float, ctx: SensorContext) -> Verdict | None:
        arrived = ctx.arrived
        if reading.channel is _STATUS and reading.values.get("status") == "offline":
            slot.due = None
            if not self.offline_status:
                return None
            return Verdict(
                self.severity,
                field="status",
                value="offline",
                why=f"the device reported offline ({self.severity})",
            )
        slot.due = arrived + self.intervals * ctx.sensor.interval_s
        if slot.active is None:
            return None
        return Verdict(
            None,
            clear=True,
            field="channel",
            value=reading.channel.value,
            why=f"{reading.channel.value} received again",
        )

    def tick(self, slot: Slot, now: float, ctx: SensorContext) -> Verdict | None:
        if slot.due is None or now < slot.due:
            return None
        limit = self.intervals * ctx.sensor.interval_s
        silent = now - (slot.due - limit)
        slot.due = None
        return Verdict(
            self.severity,
            field="silent_s",
            value=round(silent, 3),
            window=format_duration(limit),
            why=f"no reading for {silent:.0f}s ≥ {self.intervals:g} x "
            f"{ctx.sensor.interval_s:g}s ({self.severity})",
        )


class StuckEvaluator(Evaluator):
    """Every listed field unchanged for `for` and `min_readings`: a frozen sensor."""

    channels = frozenset({Channel.TELEMETRY})

    def __init__(self, condition: StuckCondition) -> None:
        self.fields = tuple(condition.fields)
        self.needs = self.fields[0]
        self.for_s = condition.for_s
        self.min_readings = condition.min_readings
        self.tolerance = condition.tolerance
        self.severity = condition.severity
        self.label = format_duration(condition.for_s)

    def new_state(self) -> Any:
        return [None, 0.0, 0]  # last values, since, readings with them

    def observe(self, slot: Slot, reading: Reading, t: float, ctx: SensorContext) -> Verdict | None:
        values = reading.values
        current: list[float] = []
        for name in self.fields:
            value = values.get(name)
            if type(value) not in NUMBERS:
                return None
            current.append(float(value))  # type: ignore[arg-type]
        state = slot.state
        last = state[0]
        unchanged = last is not None
        if unchanged:
            tolerance = self.tolerance
            # A loop, not all() over a generator: this runs on every reading.
            for a, b in zip(current, last, strict=True):
                if not abs(a - b) <= tolerance:  # so that NaN counts as a change
                    unchanged = False
                    break
        if unchanged:
            state[2] += 1
        else:
            slot.state = state = [current, t, 1]
            if slot.active is not None:
                return Verdict(
                    None,
                    clear=True,
                    values=dict(zip(self.fields, current, strict=True)),
                    why="the value changed again",
                )
            return None
        held = t - state[1]
        if state[2] >= self.min_readings and held >= self.for_s:
            return Verdict(
                self.severity,
                field="unchanged_s",
                value=round(held, 3),
                values={
                    "unchanged_s": round(held, 3),
                    "readings": state[2],
                    **dict(zip(self.fields, current, strict=True)),
                },
                window=self.label,
                why=f"{', '.join(self.fields)} unchanged for {held:.0f}s and "
                f"{state[2]} readings ({self.severity})",
            )
        return None


class RangeEvaluator(Evaluator):
    """A value outside the physically possible range; clears once back inside."""

    def __init__(self, condition: RangeCondition) -> None:
        self.field = condition.field
        self.needs = condition.field
        self.low = condition.min if condition.min is not None else float("-inf")
        self.high = condition.max if condition.max is not None else float("inf")
        self.severity = condition.severity

    def observe(self, slot: Slot, reading: Reading, t: float, ctx: SensorContext) -> Verdict | None:
        value = number(reading.values, self.field)
        if value is None:
            return None
        if value < self.low or value > self.high:
            return Verdict(
                self.severity,
                field=self.field,
                value=value,
                why=f"{self.field} {value:g} outside [{self.low:g}, {self.high:g}]",
            )
        if slot.active is None:
            return None
        return Verdict(
            None,
            clear=True,
            field=self.field,
            value=value,
            why=f"{self.field} {value:g} back in range",
        )


class ClockSkewEvaluator(Evaluator):
    """Device time far from arrival time: its readings land in the wrong windows."""

    channels = DATA_CHANNELS

    def __init__(self, condition: ClockSkewCondition) -> None:
        self.above = condition.above
        self.clear = condition.clear
        self.severity = condition.severity

    def observe(self, slot: Slot, reading: Reading, t: float, ctx: SensorContext) -> Verdict | None:
        skew = t - ctx.arrived
        size = abs(skew)
        if size > self.above:
            return Verdict(
                self.severity,
                field="skew_s",
                value=round(skew, 3),
                why=f"device clock {skew:+.0f}s from arrival ({self.severity})",
            )
        if slot.active is not None and size < self.clear:
            return Verdict(
                None,
                clear=True,
                field="skew_s",
                value=round(skew, 3),
                why=f"device clock within {self.clear:g}s again",
            )
        return None
