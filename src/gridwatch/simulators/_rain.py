"""Tipping-bucket rain gauge model."""

import random
from typing import Any

from gridwatch.simulators._model import Emission
from gridwatch.simulators._scenario import ResetCounterStep, SetStep, Step
from gridwatch.simulators._specs import RainGaugeSpec, with_params

# Float slack when comparing scenario times and bucket levels built from sums of floats.
_EPS = 1e-9


class RainGauge:
    """Water fills a bucket; each full tip is counted, reports carry whole tips only."""

    def __init__(self, spec: RainGaugeSpec, rng: random.Random) -> None:
        self._spec = spec
        self._rng = rng
        self._last_t = 0.0
        self._bucket_mm = 0.0  # collected water that has not tipped yet
        self._unreported_mm = 0.0  # tipped since the last report
        self._total_mm = spec.initial_total_mm
        self._next_report_t = spec.phase_s

    @property
    def tick_s(self) -> float:
        """Seconds between wake-ups (sampling for extra reports, else the report interval)."""
        return self._spec.tick_s

    def tick(self, t_s: float, ts: str) -> list[Emission]:
        """Collect rain up to `t_s`; report when due or when an extra-report threshold trips."""
        self._advance(t_s)
        scheduled = t_s >= self._next_report_t - _EPS
        extra = self._spec.extra_report_mm
        if scheduled:
            self._next_report_t += self._spec.interval_s
        elif extra is None or self._unreported_mm < extra - _EPS:
            return []
        return [("telemetry", self._report())]

    def apply(self, t_s: float, step: Step, ts: str) -> list[Emission]:
        """Change the rain profile, or lose power (counter back to zero)."""
        self._advance(t_s)
        if isinstance(step, SetStep):
            self._spec = with_params(self._spec, step.params)
        elif isinstance(step, ResetCounterStep):
            self._bucket_mm = 0.0
            self._unreported_mm = 0.0
            self._total_mm = 0.0
        return []

    def _advance(self, t_s: float) -> None:
        elapsed = t_s - self._last_t
        if elapsed <= 0:
            return
        self._last_t = t_s
        spec = self._spec
        if spec.rate_mm_h <= 0:
            return
        # Intensity varies from sample to sample; never negative.
        factor = max(0.0, self._rng.gauss(1.0, spec.jitter))
        self._bucket_mm += spec.rate_mm_h * elapsed / 3600.0 * factor
        tips = int((self._bucket_mm + _EPS) // spec.tip_mm)
        self._bucket_mm = max(0.0, self._bucket_mm - tips * spec.tip_mm)
        self._unreported_mm += tips * spec.tip_mm
        self._total_mm += tips * spec.tip_mm

    def _report(self) -> dict[str, Any]:
        spec = self._spec
        payload: dict[str, Any]
        if spec.mode == "total":
            payload = {"total_mm": round(self._total_mm, 3)}
        else:
            payload = {"rain_mm": round(self._unreported_mm, 3)}
        self._unreported_mm = 0.0
        if spec.precip is not None:
            payload["precip"] = spec.precip
        return payload
