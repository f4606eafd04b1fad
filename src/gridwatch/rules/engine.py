"""Evaluate readings against rules, keeping alarm state per (sensor, rule)."""

from collections.abc import Sequence
from dataclasses import dataclass

from gridwatch.domain import AlarmEvent, AlarmTransition, Reading, Sensor, SensorStatus, Severity
from gridwatch.rules.models import Rule, ThresholdCondition


@dataclass(frozen=True, slots=True)
class _Outcome:
    transition: AlarmTransition
    severity: Severity


class RuleEngine:
    """Turns readings into alarm events; state lives in memory, one entry per active alarm."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._rules = tuple(rule for rule in rules if rule.enabled)
        self._active: dict[tuple[str, str], Severity] = {}

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The enabled rules, in load order."""
        return self._rules

    def active_alarms(self) -> dict[tuple[str, str], Severity]:
        """A copy of the active alarms by (sensor id, rule id)."""
        return dict(self._active)

    def evaluate(self, sensor: Sensor, reading: Reading) -> list[AlarmEvent]:
        """The alarm events this reading causes, in rule order."""
        # Only active sensors raise city cases; commissioning gets its own path later.
        if sensor.status is not SensorStatus.ACTIVE:
            return []
        events: list[AlarmEvent] = []
        for rule in self._rules:
            if not rule.applies_to.matches(sensor):
                continue
            condition = _with_overrides(rule.condition, sensor.thresholds.get(rule.id))
            value = reading.number(condition.field)
            if value is None:
                continue
            key = (sensor.id, rule.id)
            outcome = _step_threshold(condition, self._active.get(key), value)
            if outcome is None:
                continue
            if outcome.transition is AlarmTransition.CLEARED:
                del self._active[key]
            else:
                self._active[key] = outcome.severity
            events.append(_event(rule, sensor, reading, condition.field, value, outcome))
        return events


def _with_overrides(condition: ThresholdCondition, override: object) -> ThresholdCondition:
    # A sensor may carry its own thresholds for a rule ({"levels": ..., "clear": ...}).
    if not isinstance(override, dict):
        return condition
    return ThresholdCondition.model_validate(condition.model_dump() | override)


def _step_threshold(
    condition: ThresholdCondition, active: Severity | None, value: float
) -> _Outcome | None:
    sign = 1.0 if condition.direction == "above" else -1.0
    crossed = [s for s, limit in condition.levels.items() if sign * (value - limit) >= 0]
    level = max(crossed) if crossed else None
    if active is None:
        return _Outcome(AlarmTransition.RAISED, level) if level is not None else None
    if sign * (value - condition.clear) < 0:
        return _Outcome(AlarmTransition.CLEARED, active)
    if level is None:
        # Inside the hysteresis band: neither a repeat nor a clear.
        return None
    if level > active:
        return _Outcome(AlarmTransition.ESCALATED, level)
    # An alarm never de-escalates by itself: the case keeps its highest severity.
    return _Outcome(AlarmTransition.REPEATED, active)


def _event(
    rule: Rule, sensor: Sensor, reading: Reading, field: str, value: float, outcome: _Outcome
) -> AlarmEvent:
    title = rule.title.format(
        sensor_id=sensor.id,
        grid=sensor.grid,
        kind=sensor.kind,
        field=field,
        value=f"{value:g}",
        severity=outcome.severity.value,
        rule_id=rule.id,
    )
    return AlarmEvent(
        sensor_id=sensor.id,
        rule_id=rule.id,
        transition=outcome.transition,
        severity=outcome.severity,
        category=rule.category,
        title=title,
        at=reading.ts,
        values={field: value},
    )
