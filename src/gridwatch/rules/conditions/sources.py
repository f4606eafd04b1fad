"""Where a condition's number comes from: a field, a deviation from baseline, an increment."""

import math
from collections.abc import Callable

from gridwatch.domain import Reading
from gridwatch.rules.conditions.base import NUMBERS, SensorContext, number
from gridwatch.rules.models import DeviationSource, ValueFilter
from gridwatch.rules.windows import Series

ValueFn = Callable[[Reading, SensorContext], float | None]
# A counter lower than the last one by more than this has been reset (power loss).
COUNTER_RESET_SLACK = 1e-6


def value_fn(field: str | None, deviation: DeviationSource | None) -> ValueFn:
    """A function reading the condition's number from a reading of a sensor."""
    if deviation is not None:
        return _deviation_fn(deviation)
    assert field is not None
    name = field

    def from_field(reading: Reading, ctx: SensorContext) -> float | None:
        return number(reading.values, name)

    return from_field


def _deviation_fn(source: DeviationSource) -> ValueFn:
    pairs = tuple(zip(source.fields, source.baselines, strict=True))
    magnitude = source.combine == "magnitude"

    def deviation(reading: Reading, ctx: SensorContext) -> float | None:
        calibration = ctx.sensor.calibration
        values = reading.values
        parts = []
        for field, baseline_key in pairs:
            value = values.get(field)
            baseline = calibration.get(baseline_key)
            # Without a value or a baseline there is nothing to measure against (booleans are
            # not numbers: an exact type check).
            if baseline is None or type(value) not in NUMBERS:
                return None
            parts.append(float(value) - baseline)  # type: ignore[arg-type]
        if magnitude:
            # sum(), not a loop of +=: from 3.12 on, sum() of floats rounds differently.
            return math.sqrt(sum([part * part for part in parts]))
        return max([abs(part) for part in parts])

    return deviation


def source_key(field: str | None, deviation: DeviationSource | None) -> str:
    """A stable name for a value source, so rules reading the same one share a series."""
    if deviation is not None:
        inner = ",".join(
            f"{f}-{b}" for f, b in zip(deviation.fields, deviation.baselines, strict=True)
        )
        return f"dev[{deviation.combine}:{inner}]"
    return f"field[{field}]"


def increment_sampler(
    field: str, counter: str | None, value_filter: ValueFilter | None
) -> Callable[[Reading, SensorContext, Series], float | None]:
    """Increments from `field`, or from a cumulative `counter` with resets detected."""
    filtered = value_filter is not None
    filter_field, filter_default, filter_equals = (
        (value_filter.field, value_filter.default, value_filter.equals)
        if value_filter is not None
        else ("", None, None)
    )

    def sample(reading: Reading, ctx: SensorContext, series: Series) -> float | None:
        values = reading.values
        raw = values.get(field)
        increment = float(raw) if type(raw) in NUMBERS else None  # type: ignore[arg-type]
        if counter is not None:
            total = number(values, counter)
            if total is not None:
                last = series.memo
                series.memo = total
                if increment is None and last is not None:
                    # A counter below its last value was reset and restarted from zero.
                    increment = total if total < last - COUNTER_RESET_SLACK else total - last
        if increment is None:
            return None
        if filtered and values.get(filter_field, filter_default) != filter_equals:
            return None
        return increment

    return sample


def increment_key(field: str, counter: str | None, value_filter: ValueFilter | None) -> str:
    """A stable name for an increment series."""
    where = (
        ""
        if value_filter is None
        else (f"|{value_filter.field}={value_filter.equals}/{value_filter.default}")
    )
    return f"inc[{field}|{counter}{where}]"


def value_sampler(fn: ValueFn) -> Callable[[Reading, SensorContext, Series], float | None]:
    """A series sampler from a value function."""

    def sample(reading: Reading, ctx: SensorContext, series: Series) -> float | None:
        return fn(reading, ctx)

    return sample
