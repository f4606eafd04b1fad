"""Event match (elevator faults, camera events) and state held for too long (door open)."""

from typing import Any

from gridwatch.domain import Channel, Reading, Severity
from gridwatch.rules.conditions.base import DATA_CHANNELS, Evaluator, SensorContext, Slot, Verdict
from gridwatch.rules.conditions.base import number as _number
from gridwatch.rules.models import MatchCondition, StateCondition, format_duration
from gridwatch.rules.models.common import compile_predicate

Compiled = tuple[tuple[str, frozenset[Any]], ...]


def matches(predicate: Compiled, values: dict[str, Any]) -> bool:
    """True when every field of the predicate has an allowed value (None: missing)."""
    # A plain loop: all() over a generator costs twice as much on the hot path.
    for name, allowed in predicate:  # noqa: SIM110
        if values.get(name) not in allowed:
            return False
    return True


def describe(predicate: Compiled) -> str:
    """The predicate as text for an alarm's why."""
    parts = []
    for name, allowed in predicate:
        shown = sorted(map(str, allowed))
        parts.append(f"{name}={shown[0]}" if len(shown) == 1 else f"{name} in {shown}")
    return ", ".join(parts)


class MatchEvaluator(Evaluator):
    """A listed value raises its severity; service resuming or a quiet spell clears it."""

    channels = DATA_CHANNELS

    def __init__(self, condition: MatchCondition) -> None:
        self.field = condition.field
        self.severities: dict[str, Severity] = dict(condition.severities)
        self.where = compile_predicate(condition.where)
        self.min_confidence = condition.min_confidence
        self.confidence_field = condition.confidence_field
        self.clear_on = tuple(compile_predicate(p) for p in condition.clear_on)
        self.clear_after = condition.clear_after
        self.timed = condition.clear_after is not None

    def observe(self, slot: Slot, reading: Reading, t: float, ctx: SensorContext) -> Verdict | None:
        values = reading.values
        found = values.get(self.field)
        if found is None and slot.active is None:
            return None
        severity = self.severities.get(found) if isinstance(found, str) else None
        if severity is not None and self._qualifies(values):
            slot.state = t
            if self.clear_after is not None:
                slot.due = t + self.clear_after
            return Verdict(
                severity,
                field=self.field,
                value=found,
                values=dict(values),
                why=f"{self.field} = {found} ({severity})",
            )
        if slot.active is not None:
            for predicate in self.clear_on:
                if matches(predicate, values):
                    slot.due = None
                    return Verdict(
                        None, clear=True, values=dict(values), why=f"cleared: {describe(predicate)}"
                    )
        return None

    def _qualifies(self, values: dict[str, Any]) -> bool:
        if self.where and not matches(self.where, values):
            return False
        if self.min_confidence > 0:
            confidence = _number(values, self.confidence_field)
            return confidence is not None and confidence >= self.min_confidence
        return True

    def tick(self, slot: Slot, now: float, ctx: SensorContext) -> Verdict | None:
        if slot.active is None or self.clear_after is None or slot.state is None:
            return None
        if now - slot.state < self.clear_after:
            return None
        slot.due = None
        quiet = format_duration(self.clear_after)
        return Verdict(None, clear=True, why=f"no {self.field} match for {quiet}")


class StateEvaluator(Evaluator):
    """A telemetry state held continuously for at least `for` (checked on readings and ticks)."""

    channels = frozenset({Channel.TELEMETRY})
    timed = True

    def __init__(self, condition: StateCondition) -> None:
        self.when = compile_predicate(condition.when)
        self.unless = compile_predicate(condition.unless)
        self.for_s = condition.for_s
        self.severity = condition.severity
        self.label = format_duration(condition.for_s) if condition.for_s else "0s"
        self.fields = tuple(name for name, _ in self.when)
        self.shown = describe(self.when)

    def observe(self, slot: Slot, reading: Reading, t: float, ctx: SensorContext) -> Verdict | None:
        values = reading.values
        held = matches(self.when, values) and not (self.unless and matches(self.unless, values))
        if not held:
            slot.state = None
            slot.due = None
            if slot.active is None:
                return None
            return Verdict(
                None,
                clear=True,
                values={f: v for f in self.fields if (v := values.get(f)) is not None},
                why=f"no longer {self.shown}",
            )
        since = slot.state if slot.state is not None else t
        slot.state = since
        # Only a not-yet-raised state needs the clock; afterwards readings repeat it.
        slot.due = since + self.for_s if slot.active is None else None
        if t - since >= self.for_s:
            return self._raise(slot, t - since)
        return None

    def tick(self, slot: Slot, now: float, ctx: SensorContext) -> Verdict | None:
        since = slot.state
        if since is None or now - since < self.for_s:
            return None
        slot.due = None
        return self._raise(slot, now - since)

    def _raise(self, slot: Slot, held_s: float) -> Verdict:
        return Verdict(
            self.severity,
            field="held_s",
            value=round(held_s, 3),
            window=self.label,
            why=f"{self.shown} for {held_s:.0f}s ≥ {self.label} ({self.severity})",
        )
