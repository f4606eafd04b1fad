"""The sensor lookup on the ingest path, with 100,000 sensors indexed (target: under 2 µs).

Run: .venv/bin/python -m benchmarks.registry_lookup
"""

import random
import timeit

from gridwatch.domain import Sensor
from gridwatch.gateway.registry import SensorRegistry

SENSORS = 100_000
LOOKUPS = 1_000_000
TARGET_US = 2.0


def main() -> None:
    """Index the sensors, then time lookups of random ids (hits and a share of misses)."""
    registry = SensorRegistry(
        Sensor.model_validate({"id": f"S-{n:06d}", "kind": "tilt", "grid": "110101001001001"})
        for n in range(SENSORS)
    )
    rng = random.Random(7)
    ids = [f"S-{rng.randrange(int(SENSORS * 1.1)):06d}" for _ in range(LOOKUPS)]
    lookup = registry.get
    seconds = min(timeit.repeat(lambda: [lookup(i) for i in ids], number=1, repeat=5))
    per_lookup_us = seconds / LOOKUPS * 1e6
    print(f"lookup among {SENSORS} sensors: {per_lookup_us:.3f} µs per lookup (best of 5)")
    print(f"target {TARGET_US} µs: {per_lookup_us / TARGET_US:.2f} of the budget")


if __name__ == "__main__":
    main()
