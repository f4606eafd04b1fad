"""Billboard tilt sensor model."""

import random
from typing import Any

from gridwatch.simulators._model import Emission
from gridwatch.simulators._scenario import SetStep, Step
from gridwatch.simulators._specs import TiltSpec, with_params


class TiltSensor:
    """Tilt = installation baseline + accumulated creep + elastic sway in wind + sensor noise."""

    def __init__(self, spec: TiltSpec, rng: random.Random) -> None:
        self._spec = spec
        self._rng = rng
        self._last_t = 0.0
        self._creep_x_deg = 0.0
        self._creep_y_deg = 0.0
        self._battery_v = spec.battery_v

    @property
    def tick_s(self) -> float:
        """Seconds between readings."""
        return self._spec.tick_s

    def tick(self, t_s: float, ts: str) -> list[Emission]:
        """Advance to `t_s` and take one reading."""
        self._advance(t_s)
        spec = self._spec
        wind = None
        if spec.wind_ms is not None:
            wind = max(0.0, self._rng.gauss(spec.wind_ms, spec.wind_ms * spec.turbulence))
        sway = spec.sway_deg_per_ms * (wind or 0.0)
        x = spec.baseline_x_deg + self._creep_x_deg + sway + self._rng.gauss(0.0, spec.noise_deg)
        y = spec.baseline_y_deg + self._creep_y_deg + self._rng.gauss(0.0, spec.noise_deg)
        payload: dict[str, Any] = {"tilt_x_deg": round(x, 4), "tilt_y_deg": round(y, 4)}
        if wind is not None:
            payload["wind_ms"] = round(wind, 1)
        if self._battery_v is not None:
            payload["battery_v"] = round(self._battery_v, 3)
        return [("telemetry", payload)]

    def apply(self, t_s: float, step: Step, ts: str) -> list[Emission]:
        """Change wind, drift or noise from now on; a new battery_v means a battery swap."""
        self._advance(t_s)
        if isinstance(step, SetStep):
            self._spec = with_params(self._spec, step.params)
            if "battery_v" in step.params:
                self._battery_v = self._spec.battery_v
        return []

    def _advance(self, t_s: float) -> None:
        hours = (t_s - self._last_t) / 3600.0
        if hours <= 0:
            return
        self._last_t = t_s
        # Creep integrates the current rate, so a later step changes the slope, not the level.
        self._creep_x_deg += self._spec.drift_x_deg_h * hours
        self._creep_y_deg += self._spec.drift_y_deg_h * hours
        if self._battery_v is not None:
            drain = self._spec.battery_drain_v_day * hours / 24.0
            self._battery_v = max(0.0, self._battery_v - drain)
