"""AI camera model."""

import random
from typing import Any

from gridwatch.simulators._model import Emission
from gridwatch.simulators._scenario import DetectStep, SetStep, Step
from gridwatch.simulators._specs import CameraSpec, with_params


class Camera:
    """Scripted detections, plus background detections the rules are expected to ignore."""

    def __init__(self, spec: CameraSpec, rng: random.Random) -> None:
        self._spec = spec
        self._rng = rng

    @property
    def tick_s(self) -> float:
        """Seconds between rolls for a background detection."""
        return self._spec.tick_s

    def tick(self, t_s: float, ts: str) -> list[Emission]:
        """Maybe emit one background detection (a Poisson process sampled per tick)."""
        spec = self._spec
        if not spec.background_events or spec.background_rate_h <= 0:
            return []
        chance = spec.background_rate_h * spec.interval_s / 3600.0
        if self._rng.random() >= chance:
            return []
        event = self._rng.choice(spec.background_events)
        confidence = self._rng.uniform(*spec.background_confidence)
        count = self._rng.randint(1, 3)
        return [("event", self._payload(event, confidence, count, ts, snapshot=True))]

    def apply(self, t_s: float, step: Step, ts: str) -> list[Emission]:
        """Emit a scripted detection, or change the background settings."""
        if isinstance(step, SetStep):
            self._spec = with_params(self._spec, step.params)
        elif isinstance(step, DetectStep):
            payload = self._payload(
                step.event, step.confidence, step.object_count, ts, snapshot=step.snapshot
            )
            return [("event", payload)]
        return []

    def _payload(
        self, event: str, confidence: float, count: int | None, ts: str, *, snapshot: bool
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"event": event, "confidence": round(confidence, 3)}
        if snapshot:
            stamp = ts.replace("-", "").replace(":", "").replace(".", "")
            payload["snapshot_url"] = f"{self._spec.snapshot_base_url}/{self._spec.id}/{stamp}.jpg"
        if count is not None:
            payload["object_count"] = count
        return payload
