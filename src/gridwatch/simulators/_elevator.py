"""Elevator controller model: a car on a trip cycle, service modes and faults."""

import math
import random
from dataclasses import dataclass
from typing import Any, Final, Literal

from gridwatch.simulators._model import Emission
from gridwatch.simulators._names import DEFAULT_FAULT_CODES
from gridwatch.simulators._scenario import ClearFaultStep, FaultStep, SetStep, Step
from gridwatch.simulators._specs import ElevatorSpec, with_params

Phase = Literal["doors_open", "idle", "moving", "parked", "stalled"]

# Half-width of the door zone around a landing; real controllers use about ±75..150 mm.
DOOR_ZONE_M: Final = 0.1
# Share of departures after a stop that carry passengers (the rest answer an empty hall call).
_BOARDING_CHANCE: Final = 0.8


@dataclass(frozen=True, slots=True)
class ModeBehaviour:
    """How the car behaves in one service mode."""

    serves_calls: bool
    speed_factor: float
    park_at_recall: bool = False
    park_door_open: bool = False
    carries_passengers: bool = True


MODE_BEHAVIOUR: Final[dict[str, ModeBehaviour]] = {
    "normal": ModeBehaviour(serves_calls=True, speed_factor=1.0),
    # A technician drives the car in inspection: slow, and nobody else rides.
    "inspection": ModeBehaviour(serves_calls=True, speed_factor=0.2, carries_passengers=False),
    "emergency_power": ModeBehaviour(serves_calls=True, speed_factor=0.5),
    "firefighter": ModeBehaviour(serves_calls=True, speed_factor=1.0),
    "fire_return": ModeBehaviour(False, 1.0, park_at_recall=True, park_door_open=True),
    "earthquake": ModeBehaviour(False, 0.5, park_door_open=True),
    "stopped": ModeBehaviour(serves_calls=False, speed_factor=1.0),
    "unknown": ModeBehaviour(serves_calls=False, speed_factor=1.0),
}

# Faults after which the controller stops the car where it is until released.
STALLING_FAULTS: Final = frozenset(
    {
        "safety_circuit_open",
        "stopped_outside_door_zone",
        "unintended_movement",
        "motor_runtime_limiter",
        "floor_position_lost",
        "cannot_restart",
        "top_overrun",
        "bottom_overrun",
        "entrapment",
        "overspeed",
        "door_open_while_moving",
        "power_loss",
    }
)


class Elevator:
    """A car moving at constant speed between landings, dwelling and idling in between."""

    def __init__(self, spec: ElevatorSpec, rng: random.Random) -> None:
        self._spec = spec
        self._rng = rng
        start = spec.start_floor if spec.start_floor is not None else spec.lowest_floor
        self._pos_m = self._height(start)
        self._target_m = self._pos_m
        self._phase: Phase = "idle"
        self._phase_end = spec.phase_s + 1.0
        self._door_open = False
        self._occupied = False
        self._last_t = 0.0

    @property
    def tick_s(self) -> float:
        """Seconds between telemetry reports."""
        return self._spec.tick_s

    def tick(self, t_s: float, ts: str) -> list[Emission]:
        """Advance the car to `t_s` and report its state."""
        self._advance(t_s)
        spec = self._spec
        landing = self._nearest_landing_m()
        moving = self._phase == "moving"
        direction = "none"
        if moving:
            direction = "up" if self._target_m > self._pos_m else "down"
        payload: dict[str, Any] = {
            "floor": spec.lowest_floor + round(landing / spec.floor_height_m),
            "direction": direction,
            "door": "open" if self._door_open else "closed",
            "moving": moving,
            "in_door_zone": abs(self._pos_m - landing) <= DOOR_ZONE_M,
            "mode": spec.mode,
        }
        if spec.report_occupied:
            payload["occupied"] = self._occupied
        if spec.report_speed:
            payload["speed_ms"] = round(self._speed(), 2) if moving else 0.0
        return [("telemetry", payload)]

    def apply(self, t_s: float, step: Step, ts: str) -> list[Emission]:
        """Change mode or habits, raise a fault (an event), or release a stalled car."""
        self._advance(t_s)
        if isinstance(step, SetStep):
            self._spec = with_params(self._spec, step.params)
            serves = MODE_BEHAVIOUR[self._spec.mode].serves_calls
            # Only a change of service (parking, or leaving a parked state) cuts a stop short.
            if self._phase == "parked" or (self._phase in ("doors_open", "idle") and not serves):
                self._decide()
        elif isinstance(step, FaultStep):
            if step.fault in STALLING_FAULTS:
                self._stall(outside_zone=step.fault == "stopped_outside_door_zone")
            if step.fault == "entrapment":
                self._occupied = True
            code = step.code or self._spec.fault_codes.get(step.fault)
            return [
                ("event", {"fault": step.fault, "code": code or DEFAULT_FAULT_CODES[step.fault]})
            ]
        elif isinstance(step, ClearFaultStep) and self._phase == "stalled":
            self._travel_to(self._nearest_landing_m())
        return []

    def _height(self, floor: int) -> float:
        return (floor - self._spec.lowest_floor) * self._spec.floor_height_m

    def _nearest_landing_m(self) -> float:
        h = self._spec.floor_height_m
        top = self._height(self._spec.highest_floor)
        return min(top, max(0.0, round(self._pos_m / h) * h))

    def _speed(self) -> float:
        return self._spec.rated_speed_ms * MODE_BEHAVIOUR[self._spec.mode].speed_factor

    def _advance(self, t_s: float) -> None:
        # Walk through every phase change between the last visit and t_s, so the state at t_s
        # does not depend on how often the engine looks.
        while self._last_t < t_s:
            if self._phase == "moving":
                remaining = abs(self._target_m - self._pos_m)
                arrival = self._last_t + remaining / self._speed()
                if arrival <= t_s:
                    self._pos_m = self._target_m
                    self._last_t = arrival
                    self._arrive()
                else:
                    step = self._speed() * (t_s - self._last_t)
                    self._pos_m += math.copysign(step, self._target_m - self._pos_m)
                    self._last_t = t_s
            elif self._phase in ("doors_open", "idle") and self._phase_end <= t_s:
                self._last_t = max(self._last_t, self._phase_end)
                self._decide()
            else:
                self._last_t = t_s

    def _arrive(self) -> None:
        if not MODE_BEHAVIOUR[self._spec.mode].serves_calls:
            self._park()
            return
        self._phase = "doors_open"
        self._door_open = True
        self._occupied = False
        self._phase_end = self._last_t + self._spec.dwell_s

    def _decide(self) -> None:
        spec = self._spec
        if not MODE_BEHAVIOUR[spec.mode].serves_calls:
            self._park()
            return
        after_stop = self._phase == "doors_open"
        self._door_open = False
        if after_stop and self._rng.random() < spec.idle_probability:
            self._phase = "idle"
            self._occupied = False
            self._phase_end = self._last_t + max(1.0, self._rng.expovariate(1.0 / spec.idle_s))
            return
        here = spec.lowest_floor + round(self._nearest_landing_m() / spec.floor_height_m)
        floors = [f for f in range(spec.lowest_floor, spec.highest_floor + 1) if f != here]
        boarded = self._rng.random() < _BOARDING_CHANCE
        self._occupied = after_stop and boarded and MODE_BEHAVIOUR[spec.mode].carries_passengers
        self._travel_to(self._height(self._rng.choice(floors)))

    def _park(self) -> None:
        spec = self._spec
        behaviour = MODE_BEHAVIOUR[spec.mode]
        recall = spec.recall_floor if spec.recall_floor is not None else spec.lowest_floor
        park_m = self._height(recall) if behaviour.park_at_recall else self._nearest_landing_m()
        if abs(park_m - self._pos_m) > 1e-9:
            self._travel_to(park_m)
            return
        self._phase = "parked"
        self._door_open = behaviour.park_door_open

    def _travel_to(self, target_m: float) -> None:
        self._door_open = False
        if abs(target_m - self._pos_m) <= 1e-9:
            self._arrive()
            return
        self._phase = "moving"
        self._target_m = target_m

    def _stall(self, *, outside_zone: bool) -> None:
        spec = self._spec
        landing = self._nearest_landing_m()
        if outside_zone and abs(self._pos_m - landing) <= DOOR_ZONE_M:
            # The fault means "between floors": a car standing at a landing has just set off
            # (with whoever boarded) and stopped well clear of it, down at the top landing.
            going_down = self._target_m < self._pos_m or landing >= self._height(spec.highest_floor)
            self._pos_m = landing + (-0.4 if going_down else 0.4) * spec.floor_height_m
            boarded = self._phase == "doors_open" and MODE_BEHAVIOUR[spec.mode].carries_passengers
            self._occupied = self._occupied or boarded
        self._phase = "stalled"
        self._door_open = False
        self._target_m = self._pos_m
