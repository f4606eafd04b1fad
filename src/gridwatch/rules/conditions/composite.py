"""AND / OR of conditions, each part keeping its own hysteresis."""

from collections.abc import Callable
from typing import Any

from gridwatch.domain import Reading, Severity, Value
from gridwatch.rules.conditions.base import (
    Evaluator,
    PartSlot,
    SensorContext,
    SeriesSpec,
    Slot,
    Verdict,
)


class CompositeEvaluator(Evaluator):
    """`all`: active while every part is; `any`: while one is. Parts latch between readings."""

    def __init__(self, mode: str, parts: list[Evaluator], severity: Severity | None) -> None:
        self.every = mode == "all"
        self.parts = tuple(parts)
        self.severity = severity
        self.channels = frozenset().union(*(part.channels for part in parts))
        self.timed = any(part.timed for part in parts)

    def series_specs(self) -> tuple[SeriesSpec, ...]:
        return tuple(spec for part in self.parts for spec in part.series_specs())

    def new_state(self) -> Any:
        return [PartSlot(part, part.new_state()) for part in self.parts]

    def observe(self, slot: Slot, reading: Reading, t: float, ctx: SensorContext) -> Verdict | None:
        return self._step(
            slot,
            lambda part, sub: (
                part.observe(sub, reading, t, ctx) if reading.channel in part.channels else None
            ),
        )

    def tick(self, slot: Slot, now: float, ctx: SensorContext) -> Verdict | None:
        return self._step(
            slot,
            lambda part, sub: (
                part.tick(sub, now, ctx) if sub.due is not None and sub.due <= now else None
            ),
        )

    def _step(
        self, slot: Slot, judge: Callable[[Evaluator, PartSlot], Verdict | None]
    ) -> Verdict | None:
        subs: list[PartSlot] = slot.state
        values: dict[str, Value] = {}
        whys = []
        for part, sub in zip(self.parts, subs, strict=True):
            verdict = judge(part, sub)
            sub.latch(verdict)
            if verdict is not None:
                values.update(verdict.values)
                if verdict.why:
                    whys.append(verdict.why)
        dues = [sub.due for sub in subs if sub.due is not None]
        slot.due = min(dues) if dues else None
        active = [sub.active for sub in subs if sub.active is not None]
        holds = len(active) == len(subs) if self.every else bool(active)
        why = "; ".join(whys)
        if holds:
            severity = self.severity or (min(active) if self.every else max(active))
            return Verdict(severity, values=values, why=why)
        if slot.active is not None:
            return Verdict(None, clear=True, values=values, why=why or "a part cleared")
        return None

    def dump_state(self, state: Any) -> Any:
        return [
            {"active": sub.active, "state": part.dump_state(sub.state), "due": sub.due}
            for part, sub in zip(self.parts, state, strict=True)
        ]

    def load_state(self, raw: Any) -> Any:
        subs = []
        for part, item in zip(self.parts, raw, strict=True):
            sub = PartSlot(part, part.load_state(item["state"]))
            sub.active = Severity(item["active"]) if item["active"] else None
            sub.due = item["due"]
            subs.append(sub)
        return subs
