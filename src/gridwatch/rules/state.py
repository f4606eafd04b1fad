"""Engine state as JSON bytes and back, so a restart neither re-raises nor forgets an alarm.

State belongs to a rule definition: a slot is restored in full only when the rule (with the
sensor's override) hashes the same as when it was saved. A changed rule keeps just the alarm
(active, announced) and restarts its measurements, as a hot swap does.
"""

import json
from typing import Any, Final

from gridwatch.domain import Sensor, Severity
from gridwatch.rules.conditions import SensorContext, Slot
from gridwatch.rules.plan import RuleBook, build_context

FORMAT_VERSION: Final = 1


class SnapshotError(ValueError):
    """A snapshot that cannot be restored."""


def dump_engine(contexts: dict[str, SensorContext]) -> bytes:
    """Every sensor's context as compact JSON."""
    sensors = [
        {
            "sensor": ctx.sensor.model_dump(mode="json"),
            "latched": ctx.latched,
            "series": {
                spec.key: series.dump()
                for spec, series in zip(ctx.plan.specs, ctx.series, strict=True)
            },
            "slots": {rule_id: _dump_slot(slot) for rule_id, slot in ctx.slot_items()},
        }
        for ctx in contexts.values()
    ]
    document = {"version": FORMAT_VERSION, "sensors": sensors}
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def _dump_slot(slot: Slot) -> dict[str, Any]:
    runtime = slot.runtime
    escalation = slot.escalation
    return {
        "digest": runtime.digest,
        "active": slot.active,
        "announced": slot.announced,
        "due": slot.due,
        "state": runtime.evaluator.dump_state(slot.state),
        "escalation": None
        if escalation is None or runtime.escalation is None
        else {
            "active": escalation.active,
            "state": runtime.escalation.dump_state(escalation.state),
            "due": escalation.due,
        },
    }


def load_engine(snapshot: bytes, book: RuleBook) -> dict[str, SensorContext]:
    """Contexts rebuilt for the current rules with the snapshot's state poured in."""
    try:
        document = json.loads(snapshot)
        if document.get("version") != FORMAT_VERSION:
            raise SnapshotError(f"unsupported snapshot version {document.get('version')!r}")
        contexts: dict[str, SensorContext] = {}
        for item in document["sensors"]:
            sensor = Sensor.model_validate(item["sensor"])
            ctx = build_context(book, sensor, None)
            ctx.latched = item["latched"]
            for key, raw in item["series"].items():
                position = ctx.plan.series_index.get(key)
                series = None if position is None else ctx.series[position]
                if series is not None and series.fits(
                    values=raw["val"] is not None, sums=raw["cum"] is not None
                ):
                    series.load(raw)
            for rule_id, raw in item["slots"].items():
                slot = ctx.slot(rule_id)
                if slot is not None:
                    _load_slot(slot, raw)
            contexts[sensor.id] = ctx
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, SnapshotError):
            raise
        raise SnapshotError(f"unreadable snapshot: {err}") from err
    return contexts


def _load_slot(slot: Slot, raw: dict[str, Any]) -> None:
    slot.active = _severity(raw["active"])
    slot.announced = _severity(raw["announced"])
    runtime = slot.runtime
    if raw["digest"] != runtime.digest:
        return  # the rule changed since: keep the alarm, restart the measurements
    slot.due = raw["due"]
    slot.state = runtime.evaluator.load_state(raw["state"])
    escalation = raw["escalation"]
    if escalation is not None and slot.escalation is not None and runtime.escalation is not None:
        slot.escalation.active = _severity(escalation["active"])
        slot.escalation.state = runtime.escalation.load_state(escalation["state"])
        slot.escalation.due = escalation["due"]


def _severity(raw: Any) -> Severity | None:
    return None if raw is None else Severity(raw)
