"""Condition models, one per kind, discriminated by `type`."""

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from gridwatch.domain import Severity
from gridwatch.rules.models.common import (
    Duration,
    Hold,
    LevelsMixin,
    Model,
    Predicate,
    SourceMixin,
)

Aggregate = Literal["sum", "mean", "max", "min", "count", "delta"]
HEALTH_TYPES = frozenset({"deadman", "stuck", "range", "clock_skew"})


class ThresholdCondition(SourceMixin, LevelsMixin):
    """Value past per-severity levels, held for `for`, cleared only past `clear`."""

    type: Literal["threshold"]
    for_s: Hold = Field(default=0.0, alias="for")


class DeviationCondition(SourceMixin, LevelsMixin):
    """Distance from the sensor's calibration baseline past levels (a threshold on it)."""

    type: Literal["deviation"]
    for_s: Hold = Field(default=0.0, alias="for")
    direction: Literal["above"] = "above"

    @model_validator(mode="after")
    def _needs_deviation(self) -> Self:
        if self.deviation is None:
            raise ValueError("a deviation condition needs 'deviation' (fields and baselines)")
        return self


class RateCondition(SourceMixin, LevelsMixin):
    """Rate of change over a window: mean of its last `smooth` minus its first, per unit."""

    type: Literal["rate"]
    window: Duration
    smooth: Duration | None = None
    per: Literal["second", "minute", "hour"] = "hour"
    absolute: bool = True
    direction: Literal["above"] = "above"

    @model_validator(mode="after")
    def _check_smooth(self) -> Self:
        if self.smooth is not None and self.smooth * 2 > self.window:
            raise ValueError("smooth must be at most half the window")
        return self


class ValueFilter(Model):
    """Only readings whose `field` equals `equals` (a missing field counts as `default`)."""

    field: str = Field(min_length=1)
    equals: str | bool | int | float
    default: str | bool | int | float | None = None


class WindowLevel(Model):
    """One severity: the aggregate over `window` above (or below) a limit."""

    severity: Severity
    window: Duration
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_limit(self) -> Self:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of 'above' or 'below'")
        return self


class WindowCondition(Model):
    """Aggregate of a field over several sliding windows at once, one severity per window."""

    type: Literal["window"]
    field: str = Field(min_length=1)
    # A cumulative counter read instead of (or besides) `field` increments; resets detected.
    counter: str | None = Field(default=None, min_length=1)
    filter: ValueFilter | None = None
    aggregate: Aggregate = "sum"
    levels: list[WindowLevel] = Field(min_length=1)
    # Clears once every level is back under clear_ratio times its limit (over it, for `below`).
    clear_ratio: float = Field(default=0.8, gt=0, le=1)

    @model_validator(mode="after")
    def _check_levels(self) -> Self:
        severities = [level.severity for level in self.levels]
        if len(set(severities)) != len(severities):
            raise ValueError("each severity may appear once in levels")
        if self.counter is not None and self.aggregate not in ("sum", "mean", "count"):
            raise ValueError("a counter gives increments: use sum, mean or count")
        return self


class CountCondition(Model):
    """Number of matching readings (camera detections) inside a window."""

    type: Literal["count"]
    when: Predicate = Field(min_length=1)
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    confidence_field: str = "confidence"
    window: Duration
    levels: dict[Severity, int] = Field(min_length=1)
    clear: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check_levels(self) -> Self:
        ordered = [self.levels[s] for s in sorted(self.levels)]
        if ordered != sorted(set(ordered)) or ordered[0] < 1:
            raise ValueError(f"levels must be counts >= 1 growing with severity: {ordered}")
        if self.clear >= ordered[0]:
            raise ValueError(f"clear ({self.clear}) must be below the lowest level ({ordered[0]})")
        return self


class MatchCondition(Model):
    """A reading whose `field` names a listed value (an elevator fault, a camera event)."""

    type: Literal["match"]
    field: str = Field(min_length=1)
    severities: dict[str, Severity] = Field(min_length=1)
    where: Predicate | None = None
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    confidence_field: str = "confidence"
    # Any of these predicates on a later reading clears the alarm (service resumed) ...
    clear_on: list[Predicate] = Field(default_factory=list)
    # ... or this long without another match (the repeat window).
    clear_after: Duration | None = None


class StateCondition(Model):
    """A state (door open, stopped outside the door zone) held for longer than `for`."""

    type: Literal["state"]
    when: Predicate = Field(min_length=1)
    unless: Predicate | None = None
    for_s: Hold = Field(alias="for")
    severity: Severity


class DeadmanCondition(Model):
    """No reading for `intervals` times the sensor's interval, or the device said `offline`."""

    type: Literal["deadman"]
    intervals: float = Field(default=3.0, gt=0)
    offline_status: bool = True
    severity: Severity = Severity.YELLOW


class StuckCondition(Model):
    """Every listed field unchanged (within `tolerance`) for `for` and `min_readings`."""

    type: Literal["stuck"]
    fields: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    for_s: Duration = Field(alias="for")
    min_readings: int = Field(default=10, ge=2)
    tolerance: float = Field(default=0.0, ge=0)
    severity: Severity = Severity.BLUE


class RangeCondition(Model):
    """A value outside what the device can physically report: a faulty sensor."""

    type: Literal["range"]
    field: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None
    severity: Severity = Severity.BLUE

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("give 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError("min must be below max")
        return self


class ClockSkewCondition(Model):
    """Device time more than `above` away from arrival time; clears under `clear`."""

    type: Literal["clock_skew"]
    above: Duration
    clear: Duration
    severity: Severity = Severity.BLUE

    @model_validator(mode="after")
    def _check_clear(self) -> Self:
        if self.clear >= self.above:
            raise ValueError("clear must be below above")
        return self


class CompositeCondition(Model):
    """All (AND) or any (OR) of the sub-conditions, each with its own hysteresis."""

    type: Literal["all", "any"]
    conditions: list["Condition"] = Field(min_length=1)
    # Fixed severity; default: the least of the parts for `all`, the greatest for `any`.
    severity: Severity | None = None


Condition = Annotated[
    ThresholdCondition
    | DeviationCondition
    | RateCondition
    | WindowCondition
    | CountCondition
    | MatchCondition
    | StateCondition
    | DeadmanCondition
    | StuckCondition
    | RangeCondition
    | ClockSkewCondition
    | CompositeCondition,
    Field(discriminator="type"),
]
CompositeCondition.model_rebuild()
