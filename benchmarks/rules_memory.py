"""Memory of the rule state of 100,000 sensors with full windows, one process.

    .venv/bin/python -m benchmarks.rules_memory [--sensors 100000]

Every sensor reports until its longest window is full (a rain gauge 12 h of 5-minute reports,
a tilt sensor 1 h of minute reports ...), so the ring buffers hold what they hold in steady
state. The figure is the growth of the resident set (RSS) from before the engine was built,
with the sensors themselves and the transient readings excluded. Target: under 500 MiB.
"""

import argparse
import gc
import random
import time
from datetime import timedelta
from pathlib import Path

from benchmarks.workload import START, _values, make_sensors
from gridwatch.domain import Channel, Reading
from gridwatch.rules import DEFAULT_PACK_DIR, RuleEngine, load_pack_dir

TARGET_MIB = 500
# Reports needed to fill each kind's longest window (12 h rain, 1 h tilt rate ...), plus one.
FILL = {"rain_gauge": 145, "tilt": 61, "elevator": 13, "camera": 21}


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    """Fill the engine's state and print its size."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sensors", type=int, default=100_000)
    args = parser.parse_args()
    sensors = make_sensors(args.sensors)
    pack = load_pack_dir(DEFAULT_PACK_DIR)
    rng = random.Random(3)
    gc.collect()
    before = rss_mib()
    engine = RuleEngine(pack)
    started = time.perf_counter()
    count = 0
    for round_no in range(max(FILL.values())):
        batch = [
            _reading(sensor, round_no, rng) for sensor in sensors if round_no < FILL[sensor.kind]
        ]
        for reading, sensor in batch:
            engine.evaluate(sensor, reading)
        count += len(batch)
        del batch
    gc.collect()
    after = rss_mib()
    grown = after - before
    print(
        f"sensors: {args.sensors:,}  readings to fill the windows: {count:,} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    print(
        f"rule state: {grown:,.0f} MiB RSS growth, {grown * 1024 * 1024 / args.sensors:,.0f} "
        f"bytes per sensor  ({grown / TARGET_MIB:.2f} x the {TARGET_MIB} MiB limit)"
    )
    print(f"snapshot: {len(engine.snapshot()) / 1024 / 1024:,.0f} MiB of JSON")


def _reading(sensor: object, round_no: int, rng: random.Random) -> tuple[Reading, object]:
    from gridwatch.domain import Sensor

    assert isinstance(sensor, Sensor)
    ts = START + timedelta(seconds=round_no * sensor.interval_s)
    channel = Channel.EVENT if sensor.kind == "camera" else Channel.TELEMETRY
    return Reading(sensor.id, sensor.kind, channel, ts, ts, _values(sensor.kind, rng)), sensor


if __name__ == "__main__":
    main()
