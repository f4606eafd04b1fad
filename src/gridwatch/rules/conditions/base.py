"""What every condition evaluator shares: verdicts, per-(sensor, rule) slots, sensor context."""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gridwatch.domain import Channel, Reading, Sensor, Severity, Value
from gridwatch.rules.windows import Series

if TYPE_CHECKING:  # the plan module builds contexts, so it imports this one
    from gridwatch.rules.plan import Plan

ALL_CHANNELS: Final = frozenset(Channel)
DATA_CHANNELS: Final = frozenset({Channel.TELEMETRY, Channel.EVENT})
# Floating-point slack on limits: 500 tips of 0.1 mm must reach a 50 mm level.
EPS: Final = 1e-9
NUMBERS: Final = frozenset({int, float})


def number(values: dict[str, Value], field: str) -> float | None:
    """The field as a float, or None when absent or not numeric (booleans are not numbers)."""
    value = values.get(field)
    # An exact type() check (bool is a subclass of int): mypy cannot narrow on it.
    return float(value) if type(value) in NUMBERS else None  # type: ignore[arg-type]


class Verdict:
    """What a condition says about the latest reading or tick: a severity, or clear."""

    __slots__ = ("clear", "field", "severity", "value", "values", "why", "window")

    def __init__(
        self,
        severity: Severity | None,
        *,
        clear: bool = False,
        field: str = "",
        value: Value | None = None,
        values: dict[str, Value] | None = None,
        window: str | None = None,
        why: str = "",
    ) -> None:
        self.severity = severity
        self.clear = clear
        self.field = field
        self.value = value
        self.values: dict[str, Value] = (
            values
            if values is not None
            else ({field: value} if field and value is not None else {})
        )
        self.window = window
        self.why = why


class Slot:
    """Alarm state of one (sensor, rule), or of one part of a composite rule."""

    # Kept lean: there is one per (sensor, rule), hundreds of thousands of them.
    __slots__ = ("active", "announced", "due", "runtime", "state")

    escalation: "PartSlot | None" = None  # set on EscalatedSlot only

    def __init__(self, runtime: Any, state: Any) -> None:
        self.runtime = runtime  # the compiled rule (engine) or part (composite) it belongs to
        self.active: Severity | None = None
        self.announced: Severity | None = None  # the severity last told to the case domain
        self.state = state
        self.due: float | None = None  # next time tick() must look at this slot


class EscalatedSlot(Slot):
    """The slot of a rule with `escalate_when`, carrying the escalation's own slot."""

    __slots__ = ("escalation",)

    def __init__(self, runtime: Any, state: Any, escalation: "PartSlot") -> None:
        super().__init__(runtime, state)
        self.escalation = escalation


class PartSlot(Slot):
    """A slot that follows verdicts without events: a composite's part or an escalation."""

    __slots__ = ("note",)

    def __init__(self, runtime: Any, state: Any) -> None:
        super().__init__(runtime, state)
        self.note = ""  # why the latched verdict held, for the alarm it escalates

    def latch(self, verdict: "Verdict | None") -> None:
        """Follow a verdict: active from a severity until a clear, never lower by itself."""
        if verdict is None:
            return
        if verdict.severity is not None:
            if self.active is None or verdict.severity > self.active:
                self.active = verdict.severity
            self.note = verdict.why
        elif verdict.clear:
            self.active = None


# Computes a series sample from a reading (None: no sample), given the series for its memory.
Sampler = Callable[[Reading, "SensorContext", Series], float | None]


class SensorContext:
    """One sensor's share of the engine: its slots and series, laid out by a shared plan."""

    __slots__ = ("arrived", "latched", "plan", "sensor", "series", "slots", "windows")

    def __init__(self, sensor: Sensor, plan: "Plan") -> None:
        self.sensor = sensor
        # The plan (shared by every sensor with the same rules) says which slot and series
        # sits at which position; per sensor only the lists below are kept.
        self.plan = plan
        self.slots: list[Slot] = []
        self.series: list[Series] = []
        self.latched: dict[str, Value] | None = None  # last values of suppress_when fields
        self.windows: tuple[Any, ...] = ()  # maintenance windows covering this sensor
        self.arrived = 0.0  # arrival time (epoch s) of the reading being evaluated

    def get_series(self, key: str) -> Series:
        """The series a condition asked for by key."""
        return self.series[self.plan.series_index[key]]

    def slot(self, rule_id: str) -> Slot | None:
        """The slot of a rule, None when the rule does not apply to this sensor."""
        index = self.plan.index.get(rule_id)
        return None if index is None else self.slots[index]

    def slot_items(self) -> list[tuple[str, Slot]]:
        """(rule id, slot) pairs in plan order."""
        return [
            (item.rule.id, slot) for item, slot in zip(self.plan.rules, self.slots, strict=True)
        ]


# An evaluator's observe, bound: (slot, reading, device time, context) -> verdict.
Observe = Callable[["Slot", Reading, float, "SensorContext"], "Verdict | None"]


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """A series a condition reads: its identity, how far back it must reach, what it keeps."""

    key: str
    span: float
    values: bool
    sums: bool
    channels: frozenset[Channel]
    sample: Sampler


class Evaluator(ABC):
    """A compiled condition: turns readings (and ticks) of one sensor into verdicts."""

    channels: frozenset[Channel] = DATA_CHANNELS
    timed: bool = False
    # A field without which observe() returns None and changes nothing, whatever the slot's
    # state: the engine skips the call for readings that lack it (most lack most fields).
    needs: str | None = None

    def series_specs(self) -> tuple[SeriesSpec, ...]:
        """The series this condition reads; the engine feeds them before evaluating."""
        return ()

    def new_state(self) -> Any:
        """Fresh per-slot state (JSON-able, or convertible by dump_state)."""
        return None

    @abstractmethod
    def observe(self, slot: Slot, reading: Reading, t: float, ctx: SensorContext) -> Verdict | None:
        """The verdict on a reading at device time `t` (epoch s); None when there is none."""

    def tick(self, slot: Slot, now: float, ctx: SensorContext) -> Verdict | None:
        """The verdict when time passes without readings; None when there is none."""
        return None

    def dump_state(self, state: Any) -> Any:
        """The slot state as JSON-able data."""
        return state

    def load_state(self, raw: Any) -> Any:
        """Slot state from dump_state's output."""
        return raw
