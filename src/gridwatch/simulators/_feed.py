"""The pure feed engine: a scenario becomes one time-ordered stream of messages, no broker."""

import heapq
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from gridwatch.simulators._kinds import build_model
from gridwatch.simulators._model import DeviceModel
from gridwatch.simulators._scenario import OfflineStep, OnlineStep, Scenario, Step

# Where scenario time 0 sits when neither the caller nor the scenario says: fixed, so that
# the pure feed is reproducible byte for byte.
DEFAULT_START: Final = datetime(2025, 1, 1, tzinfo=UTC)
# Float slack for "at or before the end" comparisons on sums of intervals.
_EPS: Final = 1e-9


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One message a simulated device publishes: topic suffix, sensor id, payload, time."""

    suffix: Literal["telemetry", "event"]
    sensor_id: str
    payload: dict[str, Any]
    t_s: float

    def topic(self, prefix: str = "gridwatch") -> str:
        """The full MQTT topic under `prefix`."""
        return f"{prefix}/{self.sensor_id}/{self.suffix}"

    def encode(self) -> bytes:
        """The payload as compact UTF-8 JSON, as it goes on the wire."""
        return json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A device's connection coming back (`online`) or dropping abruptly at time `t_s`."""

    sensor_id: str
    online: bool
    t_s: float


FeedItem = SimMessage | StatusChange


def format_ts(start: datetime, t_s: float) -> str:
    """RFC 3339 UTC with milliseconds for scenario time `t_s` after `start`."""
    moment = (start + timedelta(milliseconds=round(t_s * 1000))).astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def iter_messages(
    scenario: Scenario,
    *,
    seed: int = 0,
    until_s: float | None = None,
    start: datetime | None = None,
) -> Iterator[SimMessage]:
    """Telemetry and events of `scenario` up to `until_s` (inclusive), in time order."""
    for item in iter_feed(scenario, seed=seed, until_s=until_s, start=start):
        if isinstance(item, SimMessage):
            yield item


def iter_feed(
    scenario: Scenario,
    *,
    seed: int = 0,
    until_s: float | None = None,
    start: datetime | None = None,
) -> Iterator[FeedItem]:
    """Messages and connection changes of `scenario`, in time order.

    `until_s` defaults to the scenario's duration; with neither, the feed never ends.
    `start` (aware) defaults to the scenario's `start`, else a fixed date.
    """
    end = until_s if until_s is not None else scenario.duration_s
    limit = math.inf if end is None else end + _EPS
    origin = start or scenario.start or DEFAULT_START
    if origin.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    models = {spec.id: build_model(spec, seed=seed) for spec in scenario.devices}
    online = dict.fromkeys(models, True)
    # (next tick time, declaration order, tick number): ties resolve by declaration order, and
    # tick times are phase + n * tick_s so they do not accumulate float error.
    wakeups = [(spec.phase_s, index, 0) for index, spec in enumerate(scenario.devices)]
    heapq.heapify(wakeups)
    steps = _step_occurrences(scenario)
    pending = next(steps, None)
    while wakeups:
        tick_t, index, tick_no = wakeups[0]
        # A step at the same time as a tick goes first: "at 20 s heavy rain" shapes the 20 s
        # report's future, and the report still covers the time before the change.
        if pending is not None and pending[0] <= tick_t:
            step_t, step = pending
            if step_t > limit:
                return
            pending = next(steps, None)
            yield from _apply(step_t, step, models, online, origin)
            continue
        if tick_t > limit:
            return
        spec = scenario.devices[index]
        model = models[spec.id]
        heapq.heapreplace(
            wakeups, (spec.phase_s + (tick_no + 1) * model.tick_s, index, tick_no + 1)
        )
        emissions = model.tick(tick_t, format_ts(origin, tick_t))
        # An offline device keeps measuring; what it would have sent is lost with the link.
        if online[spec.id]:
            for suffix, payload in emissions:
                yield _message(suffix, spec.id, payload, tick_t, origin)


def _apply(
    t_s: float,
    step: Step,
    models: dict[str, DeviceModel],
    online: dict[str, bool],
    origin: datetime,
) -> Iterator[FeedItem]:
    if isinstance(step, OfflineStep | OnlineStep):
        wanted = isinstance(step, OnlineStep)
        if online[step.device] != wanted:
            online[step.device] = wanted
            yield StatusChange(step.device, wanted, t_s)
        return
    emissions = models[step.device].apply(t_s, step, format_ts(origin, t_s))
    if online[step.device]:
        for suffix, payload in emissions:
            yield _message(suffix, step.device, payload, t_s, origin)


def _message(
    suffix: Literal["telemetry", "event"],
    sensor_id: str,
    payload: dict[str, Any],
    t_s: float,
    origin: datetime,
) -> SimMessage:
    return SimMessage(suffix, sensor_id, {"ts": format_ts(origin, t_s), **payload}, t_s)


def _step_occurrences(scenario: Scenario) -> Iterator[tuple[float, Step]]:
    ordered = sorted(scenario.timeline, key=lambda step: step.at_s)  # stable: file order on ties
    if not ordered:
        return
    cycles = itertools.count() if scenario.repeat_every_s is not None else range(1)
    period = scenario.repeat_every_s or 0.0
    for cycle in cycles:
        for step in ordered:
            yield cycle * period + step.at_s, step
