"""Evaluate readings against rules, keeping alarm state per (sensor, rule)."""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from gridwatch.domain import (
    AlarmEvent,
    AlarmTransition,
    Channel,
    Reading,
    Sensor,
    SensorStatus,
    Severity,
    Value,
)
from gridwatch.rules.conditions import SensorContext, Slot, Verdict
from gridwatch.rules.conditions.events import matches
from gridwatch.rules.loader import RulePack
from gridwatch.rules.models import Rule
from gridwatch.rules.plan import CompiledRule, RuleBook, build_context
from gridwatch.rules.state import dump_engine, load_engine

_SEVERITIES = tuple(sorted(Severity))
_TELEMETRY, _EVENT = Channel.TELEMETRY, Channel.EVENT
ONLY_ACTIVE: frozenset[SensorStatus] = frozenset({SensorStatus.ACTIVE})


class RuleEngine:
    """Turns readings (and the passing of time) into alarm events, one state per (sensor, rule).

    Only sensors of the `live` statuses are evaluated (by default active ones). An alarm that
    is suppressed (maintenance window, the sensor's `suppress_when` values, inhibition by a
    greater alarm) keeps its state but tells the case domain nothing until the suppression
    ends.
    """

    def __init__(
        self,
        rules: Sequence[Rule] | RulePack = (),
        *,
        maintenance_windows: Sequence[Any] = (),
        live: frozenset[SensorStatus] = ONLY_ACTIVE,
    ) -> None:
        self._book = RuleBook(_as_pack(rules, maintenance_windows))
        # Which sensor statuses raise alarms is the caller's policy (the alarm service's).
        self._live = live
        self._contexts: dict[str, SensorContext] = {}

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The enabled rules, inhibiting rules before the ones they inhibit."""
        return self._book.rules

    @property
    def problems(self) -> dict[tuple[str, str], str]:
        """Sensor overrides that could not be applied, by (sensor id, rule id)."""
        return dict(self._book.problems)

    def active_alarms(self) -> dict[tuple[str, str], Severity]:
        """A copy of the active alarms by (sensor id, rule id)."""
        return {
            (sensor_id, rule_id): slot.active
            for sensor_id, ctx in self._contexts.items()
            for rule_id, slot in ctx.slot_items()
            if slot.active is not None
        }

    def evaluate(self, sensor: Sensor, reading: Reading) -> list[AlarmEvent]:
        """The alarm events this reading causes, in rule order."""
        if sensor.status not in self._live:
            return []
        ctx = self._contexts.get(sensor.id)
        if ctx is None or (ctx.sensor is not sensor and ctx.sensor != sensor):
            ctx = self._contexts[sensor.id] = build_context(self._book, sensor, ctx)
        values = reading.values
        for name in self._book.latch_fields:
            if name in values:
                if ctx.latched is None:
                    ctx.latched = {}
                ctx.latched[name] = values[name]
        ts, received_at = reading.ts, reading.received_at
        t = ts.timestamp()
        ctx.arrived = t if received_at is ts else received_at.timestamp()
        channel = reading.channel
        index = 0 if channel is _TELEMETRY else 1 if channel is _EVENT else 2
        plan = ctx.plan
        all_series = ctx.series
        for sample, position in plan.feeds[index]:
            series = all_series[position]
            value = sample(reading, ctx, series)
            if value is not None:
                series.push(t, value)
        events: list[AlarmEvent] = []
        slots = ctx.slots
        for position, observe, escalate, needs in plan.observers[index]:
            if needs is not None and needs not in values:
                continue
            slot = slots[position]
            if escalate is not None:
                escalation = slot.escalation
                assert escalation is not None  # the plan gave the rule an escalation slot
                escalation.latch(escalate(escalation, reading, t, ctx))
            verdict = observe(slot, reading, t, ctx)
            if verdict is not None:
                event = self._settle(ctx, slot, verdict, ts, from_tick=False)
                if event is not None:
                    events.append(event)
        return events

    def sync_sensors(self, current: Callable[[str], Sensor | None]) -> None:
        """Take the registry's view of every sensor the engine holds state for.

        The engine otherwise learns of a change only from the sensor's next reading; a sensor
        put into maintenance or retired sends none, and its deadman would still fire. A sensor
        no longer registered is forgotten.
        """
        for sensor_id, ctx in list(self._contexts.items()):
            sensor = current(sensor_id)
            if sensor is None:
                del self._contexts[sensor_id]
            elif sensor != ctx.sensor:
                self._contexts[sensor_id] = build_context(self._book, sensor, ctx)

    def tick(self, now: datetime) -> list[AlarmEvent]:
        """Alarms caused by time passing: silence (deadman), states held, windows emptying."""
        now_t = now.timestamp()
        events: list[AlarmEvent] = []
        for ctx in self._contexts.values():
            if ctx.sensor.status not in self._live:
                continue
            slots = ctx.slots
            for position in ctx.plan.timed:
                slot = slots[position]
                due = slot.due
                if due is None or due > now_t:
                    continue
                verdict = slot.runtime.evaluator.tick(slot, now_t, ctx)
                if verdict is not None:
                    event = self._settle(ctx, slot, verdict, now, from_tick=True)
                    if event is not None:
                        events.append(event)
        return events

    def _settle(
        self, ctx: SensorContext, slot: Slot, verdict: Verdict, at: datetime, *, from_tick: bool
    ) -> AlarmEvent | None:
        severity = verdict.severity
        if severity is None:
            if not verdict.clear or slot.active is None:
                return None
            slot.active = None
            announced, slot.announced = slot.announced, None
            if announced is None:
                return None  # raised while suppressed: the case domain never heard of it
            cleared = _event(ctx, slot, AlarmTransition.CLEARED, announced, verdict, at)
            return _fold(ctx, slot, cleared)
        escalation = slot.escalation
        escalate = slot.runtime.rule.escalate_when
        if escalation is not None and escalation.active is not None and escalate is not None:
            raised = _SEVERITIES[min(len(_SEVERITIES) - 1, severity.rank + escalate.by)]
            verdict.why = f"{verdict.why}; raised to {raised} while {escalation.note}"
            severity = raised
        # Severity never goes down by itself: the case keeps the highest one seen.
        if slot.active is None or severity > slot.active:
            slot.active = severity
        if self._muted(ctx, slot.runtime, at):
            return None
        announced = slot.announced
        if announced is None:
            transition = AlarmTransition.RAISED
        elif slot.active > announced:
            transition = AlarmTransition.ESCALATED
        elif from_tick:
            return None  # time passing alone is not another occurrence
        else:
            transition = AlarmTransition.REPEATED
        slot.announced = slot.active
        return _fold(ctx, slot, _event(ctx, slot, transition, slot.active, verdict, at))

    def _muted(self, ctx: SensorContext, runtime: CompiledRule, at: datetime) -> bool:
        if runtime.suppress and matches(runtime.suppress, ctx.latched or {}):
            return True
        for source_id, min_severity in runtime.inhibited_by:
            source = ctx.slot(source_id)
            if source is not None and source.active is not None and source.active >= min_severity:
                return True
        rule_id = runtime.rule.id
        return any(window.covers(ctx.sensor, rule_id, at) for window in ctx.windows)

    def replace_rules(
        self, rules: Sequence[Rule] | RulePack, *, at: datetime | None = None
    ) -> list[AlarmEvent]:
        """Swap in new rules, keeping the state of every unchanged rule.

        A changed rule restarts its measurements but keeps its announced alarm until the new
        definition clears it. A removed rule's announced alarms are returned as cleared.
        """
        when = at or datetime.now(UTC)
        self._book = RuleBook(_as_pack(rules, ()))
        kept = {rule.id for rule in self._book.rules}
        events: list[AlarmEvent] = []
        for sensor_id, old in list(self._contexts.items()):
            for rule_id, slot in old.slot_items():
                if rule_id not in kept and slot.announced is not None:
                    gone = Verdict(None, clear=True, why="the rule was removed")
                    events.append(
                        _event(old, slot, AlarmTransition.CLEARED, slot.announced, gone, when)
                    )
            self._contexts[sensor_id] = build_context(self._book, old.sensor, old)
        return events

    def snapshot(self) -> bytes:
        """The whole engine state as JSON bytes, for restore() after a restart."""
        return dump_engine(self._contexts)

    def restore(self, snapshot: bytes) -> None:
        """Take over a snapshot's state: active alarms stay active and are not raised again."""
        self._contexts = load_engine(snapshot, self._book)

    def rebuild(self, readings: Iterable[tuple[Sensor, Reading]]) -> int:
        """Rebuild state by replaying stored readings; alarms found are taken as announced."""
        count = 0
        for sensor, reading in readings:
            self.evaluate(sensor, reading)
            count += 1
        for ctx in self._contexts.values():
            for slot in ctx.slots:
                slot.announced = slot.active
        return count


def _fold(ctx: SensorContext, slot: Slot, event: AlarmEvent) -> AlarmEvent | None:
    """A grouped rule's event as its group's case sees it.

    The case opens with the group's first alarm, escalates only past the highest severity any
    member has announced, hears every other member's alarm as a repeat (its evidence), and
    clears only when the last announced member clears.
    """
    group = slot.runtime.rule.case_group
    if group is None:
        return event
    others = [
        other.announced
        for other in ctx.slots
        if other is not slot
        and other.announced is not None
        and other.runtime.rule.case_group == group
    ]
    if not others:
        return event
    if event.transition is AlarmTransition.CLEARED:
        return None
    if event.transition is AlarmTransition.REPEATED or event.severity <= max(others):
        transition = AlarmTransition.REPEATED
    else:
        transition = AlarmTransition.ESCALATED
    return event if transition is event.transition else replace(event, transition=transition)


def _as_pack(rules: Sequence[Rule] | RulePack, windows: Sequence[Any]) -> RulePack:
    if isinstance(rules, RulePack):
        return (
            rules if not windows else RulePack(rules.rules, (*rules.maintenance_windows, *windows))
        )
    return RulePack(rules=tuple(rules), maintenance_windows=tuple(windows))


def _event(
    ctx: SensorContext,
    slot: Slot,
    transition: AlarmTransition,
    severity: Severity,
    verdict: Verdict,
    at: datetime,
) -> AlarmEvent:
    rule: Rule = slot.runtime.rule
    sensor = ctx.sensor
    title = rule.title.format(
        sensor_id=sensor.id,
        grid=sensor.grid,
        kind=sensor.kind,
        field=verdict.field,
        value=_shown(verdict.value),
        severity=severity.value,
        rule_id=rule.id,
        window=verdict.window or "",
        why=verdict.why,
    )
    return AlarmEvent(
        sensor_id=sensor.id,
        rule_id=rule.id,
        transition=transition,
        severity=severity,
        category=rule.category,
        title=title,
        at=at,
        values=dict(verdict.values),
        maintenance=rule.maintenance,
        window=verdict.window,
        why=verdict.why,
        case_group=rule.case_group,
    )


def _shown(value: Value | None) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)
