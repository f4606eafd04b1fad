"""Replay pacing: scenario (or recorded) time mapped onto the wall clock at a given speed."""

import asyncio
import math


def check_speed(speed: float | None) -> float | None:
    """Return the speed factor, or None for full speed (no sleeping); reject nonsense."""
    if speed is None or speed == math.inf:
        return None
    if not speed > 0 or math.isnan(speed):
        raise ValueError(f"speed must be > 0 (or math.inf / None for full speed), not {speed!r}")
    return float(speed)


class Pacer:
    """Sleeps until feed time `t_s` is due at `speed` times real time since `start()`."""

    def __init__(self, speed: float | None) -> None:
        self._speed = check_speed(speed)
        self._origin = 0.0

    @property
    def full_speed(self) -> bool:
        """True when nothing is ever waited for."""
        return self._speed is None

    def start(self) -> None:
        """Anchor feed time 0 at the current loop time."""
        self._origin = asyncio.get_running_loop().time()

    async def wait_until(self, t_s: float) -> None:
        """Sleep until `t_s` is due; return at once at full speed or when already late."""
        if self._speed is None:
            return
        # Deadlines come from the origin, not the previous wait, so lateness never accumulates.
        delay = self._origin + t_s / self._speed - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
