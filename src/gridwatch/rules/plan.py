"""Rules compiled once, and per-sensor plans: which rules, series and slots a sensor has."""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gridwatch.domain import Channel, Sensor, Severity
from gridwatch.rules.conditions import Evaluator, SensorContext, SeriesSpec, Slot, build_evaluator
from gridwatch.rules.conditions.base import EscalatedSlot, Observe, PartSlot, Sampler
from gridwatch.rules.loader import RulePack, error_location
from gridwatch.rules.models import MaintenanceWindow, Rule
from gridwatch.rules.models.common import compile_predicate
from gridwatch.rules.windows import Series

# Channel order of Plan.by_channel and .feeds (indexing beats hashing an enum).
CHANNELS = (Channel.TELEMETRY, Channel.EVENT, Channel.STATUS)


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """A rule with its evaluators built, as one sensor sees it (with its overrides)."""

    rule: Rule
    evaluator: Evaluator
    escalation: Evaluator | None
    digest: str  # stable across processes: what a snapshot's state belongs to
    suppress: tuple[tuple[str, frozenset[Any]], ...]
    inhibited_by: tuple[tuple[str, Severity], ...]

    @property
    def timed(self) -> bool:
        """Whether tick() must look at this rule's slots."""
        return self.evaluator.timed

    def specs(self) -> tuple[SeriesSpec, ...]:
        """Every series the rule and its escalation read."""
        extra = self.escalation.series_specs() if self.escalation is not None else ()
        return self.evaluator.series_specs() + extra


def digest(rule: Rule, override: Any) -> str:
    """A short stable hash of a rule definition and a sensor's override of it."""
    text = rule.model_dump_json() + json.dumps(override, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class RuleBook:
    """The enabled rules compiled, inhibition sources first, with per-override variants."""

    def __init__(self, pack: RulePack) -> None:
        rules = [rule for rule in pack.rules if rule.enabled]
        self.rules = tuple(_sources_first(rules))
        self.windows: tuple[MaintenanceWindow, ...] = pack.maintenance_windows
        inhibitors: dict[str, list[tuple[str, Severity]]] = {}
        for rule in self.rules:
            if rule.inhibits is not None:
                for target in rule.inhibits.rules:
                    inhibitors.setdefault(target, []).append((rule.id, rule.inhibits.min_severity))
        self._inhibitors = {key: tuple(value) for key, value in inhibitors.items()}
        self.latch_fields = tuple(
            sorted({name for rule in self.rules for name in (rule.suppress_when or {})})
        )
        self._variants: dict[tuple[str, str], CompiledRule] = {}
        self._plans: dict[tuple[int, ...], Plan] = {}
        self.problems: dict[tuple[str, str], str] = {}

    def for_sensor(self, sensor: Sensor) -> list[CompiledRule]:
        """The compiled rules that apply to the sensor, with its threshold overrides."""
        return [
            self._variant(rule, sensor) for rule in self.rules if rule.applies_to.matches(sensor)
        ]

    def plan_for(self, sensor: Sensor) -> "Plan":
        """The (shared) plan of the sensor's compiled rules."""
        compiled = self.for_sensor(sensor)
        key = tuple(id(item) for item in compiled)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = make_plan(compiled)
        return plan

    def _variant(self, rule: Rule, sensor: Sensor) -> CompiledRule:
        override = sensor.thresholds.get(rule.id)
        key = (rule.id, json.dumps(override, sort_keys=True, default=str))
        compiled = self._variants.get(key)
        if compiled is None:
            compiled = self._variants[key] = self._compile(rule, sensor.id, override)
        return compiled

    def _compile(self, rule: Rule, sensor_id: str, override: Any) -> CompiledRule:
        effective = rule
        if isinstance(override, dict):
            try:
                effective = apply_override(rule, override)
            except ValidationError as err:
                # A bad override must not stop the sensor's other rules: keep the pack's values.
                first = err.errors()[0]
                self.problems[(sensor_id, rule.id)] = f"{error_location(first)}: {first['msg']}"
                override = None
        escalate = effective.escalate_when
        return CompiledRule(
            rule=effective,
            evaluator=build_evaluator(effective.condition),
            escalation=build_evaluator(escalate.condition) if escalate is not None else None,
            digest=digest(rule, override),
            suppress=compile_predicate(effective.suppress_when),
            inhibited_by=self._inhibitors.get(rule.id, ()),
        )


def apply_override(rule: Rule, override: dict[str, Any]) -> Rule:
    """The rule with a sensor's override merged into its condition (top-level keys replace)."""
    condition = type(rule.condition).model_validate(
        rule.condition.model_dump(by_alias=True) | override
    )
    return rule.model_copy(update={"condition": condition})


def check_overrides(sensor: Sensor, rules: Sequence[Rule]) -> dict[str, str]:
    """Problems with the sensor's threshold overrides, by rule id (unknown rules included)."""
    by_id = {rule.id: rule for rule in rules}
    problems: dict[str, str] = {}
    for rule_id, override in sensor.thresholds.items():
        rule = by_id.get(rule_id)
        if rule is None:
            problems[rule_id] = "no such rule"
        elif not isinstance(override, dict):
            problems[rule_id] = "an override must be a mapping of condition fields"
        else:
            try:
                apply_override(rule, override)
            except ValidationError as err:
                first = err.errors()[0]
                problems[rule_id] = f"{error_location(first)}: {first['msg']}"
    return problems


def _sources_first(rules: list[Rule]) -> list[Rule]:
    # Evaluate an inhibiting rule before the rules it inhibits, so a reading that raises
    # both is already one alarm. Cycles were refused by the loader; load order otherwise.
    by_id = {rule.id: rule for rule in rules}
    sources: dict[str, set[str]] = {rule.id: set() for rule in rules}
    for rule in rules:
        for target in rule.inhibits.rules if rule.inhibits else ():
            if target in sources:
                sources[target].add(rule.id)
    ordered: list[Rule] = []
    placed: set[str] = set()

    def place(rule_id: str, path: frozenset[str]) -> None:
        if rule_id in placed or rule_id in path:
            return
        for source in sorted(sources[rule_id]):
            place(source, path | {rule_id})
        placed.add(rule_id)
        ordered.append(by_id[rule_id])

    for rule in rules:
        place(rule.id, frozenset())
    return ordered


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """The layout shared by every sensor that sees the same compiled rules."""

    rules: tuple[CompiledRule, ...]
    index: dict[str, int]  # rule id -> slot position
    specs: tuple[SeriesSpec, ...]  # merged: one per series key
    series_index: dict[str, int]  # series key -> series position
    feeds: tuple[tuple[tuple[Sampler, int], ...], ...]  # per channel: (sampler, series position)
    # Per channel, in rule order: (slot position, the rule's observe, its escalation's observe,
    # the field it needs). Bound methods looked up once per plan, not per reading and rule.
    observers: tuple[tuple[tuple[int, Observe, Observe | None, str | None], ...], ...]
    timed: tuple[int, ...]  # slot positions tick() must visit


def make_plan(compiled: Sequence[CompiledRule]) -> Plan:
    """The plan for a list of compiled rules."""
    merged: dict[str, SeriesSpec] = {}
    for item in compiled:
        for spec in item.specs():
            seen = merged.get(spec.key)
            merged[spec.key] = (
                spec
                if seen is None
                else SeriesSpec(
                    spec.key,
                    max(spec.span, seen.span),
                    spec.values or seen.values,
                    spec.sums or seen.sums,
                    spec.channels | seen.channels,
                    spec.sample,
                )
            )
    specs = tuple(merged.values())
    return Plan(
        rules=tuple(compiled),
        index={item.rule.id: position for position, item in enumerate(compiled)},
        specs=specs,
        series_index={spec.key: position for position, spec in enumerate(specs)},
        feeds=tuple(
            tuple((spec.sample, pos) for pos, spec in enumerate(specs) if channel in spec.channels)
            for channel in CHANNELS
        ),
        observers=tuple(
            tuple(
                (
                    pos,
                    item.evaluator.observe,
                    item.escalation.observe if item.escalation is not None else None,
                    # An escalation watches other fields: its rule is never skipped.
                    item.evaluator.needs if item.escalation is None else None,
                )
                for pos, item in enumerate(compiled)
                if channel in item.evaluator.channels
            )
            for channel in CHANNELS
        ),
        timed=tuple(pos for pos, item in enumerate(compiled) if item.timed),
    )


def build_context(book: RuleBook, sensor: Sensor, old: SensorContext | None) -> SensorContext:
    """The sensor's context, keeping series and slot state that are still valid from `old`."""
    plan = book.plan_for(sensor)
    ctx = SensorContext(sensor, plan)
    for spec in plan.specs:
        series = None
        if old is not None and spec.key in old.plan.series_index:
            series = old.get_series(spec.key)
        if series is None or not series.fits(values=spec.values, sums=spec.sums):
            series = Series(spec.span, values=spec.values, sums=spec.sums)
        series.span = spec.span
        ctx.series.append(series)
    ctx.slots = [_slot(item, old.slot(item.rule.id) if old else None) for item in plan.rules]
    ctx.windows = tuple(
        window
        for window in book.windows
        if (not window.sensors or sensor.id in window.sensors)
        and all(sensor.tags.get(key) == value for key, value in window.tags.items())
    )
    if old is not None:
        ctx.latched = old.latched
    return ctx


def _slot(item: CompiledRule, old: Slot | None) -> Slot:
    if old is not None and old.runtime.digest == item.digest:
        old.runtime = item
        return old
    state = item.evaluator.new_state()
    slot: Slot = (
        Slot(item, state)
        if item.escalation is None
        else EscalatedSlot(item, state, PartSlot(item.escalation, item.escalation.new_state()))
    )
    if old is not None:
        # The definition changed: its measurements restart, but an alarm already told to the
        # case domain stays active until the new definition says clear.
        slot.active, slot.announced = old.active, old.announced
    return slot
