"""What the feed engine needs from a device model, whatever its kind."""

from typing import Any, Literal, Protocol

from gridwatch.simulators._scenario import Step

# (topic suffix, payload without `ts`): the engine stamps the time, the model only knows physics.
Emission = tuple[Literal["telemetry", "event"], dict[str, Any]]


class DeviceModel(Protocol):
    """A simulated device's state, advanced in scenario time by the feed engine."""

    @property
    def tick_s(self) -> float:
        """Seconds between wake-ups."""
        ...

    def tick(self, t_s: float, ts: str) -> list[Emission]:
        """Advance to scenario time `t_s` (stamped `ts`) and return what the device sends."""
        ...

    def apply(self, t_s: float, step: Step, ts: str) -> list[Emission]:
        """Advance to `t_s`, then apply a timeline step (already validated for this kind)."""
        ...
