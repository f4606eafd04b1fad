"""The device kinds: one table row per kind, from its description to its model."""

import random
from collections.abc import Callable
from typing import Any, Final

from gridwatch.simulators._camera import Camera
from gridwatch.simulators._elevator import Elevator
from gridwatch.simulators._model import DeviceModel
from gridwatch.simulators._rain import RainGauge
from gridwatch.simulators._specs import DeviceSpec
from gridwatch.simulators._tilt import TiltSensor

# Each factory takes the spec of its own kind; the discriminated union guarantees the match.
MODEL_FACTORIES: Final[dict[str, Callable[[Any, random.Random], DeviceModel]]] = {
    "rain_gauge": RainGauge,
    "tilt": TiltSensor,
    "elevator": Elevator,
    "camera": Camera,
}


def build_model(spec: DeviceSpec, *, seed: int) -> DeviceModel:
    """Build the model of one device, with its own random stream derived from the run's seed."""
    # A string seed is hashed with SHA-512 by `random`, so streams are stable across runs and
    # machines, and independent per device: adding a device does not change the others.
    rng = random.Random(f"{seed}/{spec.id}")  # noqa: S311 - simulation noise, not secrets
    return MODEL_FACTORIES[spec.kind](spec, rng)
