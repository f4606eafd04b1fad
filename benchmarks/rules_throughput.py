"""Readings per second through the default rule pack, 10,000 sensors, one process.

    .venv/bin/python -m benchmarks.rules_throughput [--sensors 10000] [--rounds 60] [--profile]

Readings are built before the clock starts (decoding is the codec's cost, not the engine's);
the clock covers `RuleEngine.evaluate` for every reading plus one `tick` per round. Target:
at least 100,000 readings/s. A round's readings are evaluated one kind after the other (each
sensor still sees its own readings in order), so the cost of a reading of each kind shows too.
"""

import argparse
import cProfile
import pstats
import random
import time
from collections import Counter, defaultdict
from datetime import timedelta

from benchmarks.workload import MIX, ROUND_S, START, make_sensors, readings_round
from gridwatch.domain import Reading
from gridwatch.rules import DEFAULT_PACK_DIR, RuleEngine, load_pack_dir

TARGET = 100_000


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    engine = RuleEngine(load_pack_dir(DEFAULT_PACK_DIR))
    sensors = make_sensors(args.sensors)
    by_id = {sensor.id: sensor for sensor in sensors}
    rng = random.Random(7)
    # Round 0 registers every sensor (plans compiled once per sensor): timed on its own.
    started = time.perf_counter()
    for round_no in range(round(300 / ROUND_S)):
        for reading in readings_round(sensors, round_no, rng):
            engine.evaluate(by_id[reading.sensor_id], reading)
    warmup = time.perf_counter() - started
    elapsed, count, events, last_tick, ticks = 0.0, 0, 0, 0.0, 0
    kind_seconds: Counter[str] = Counter()
    kind_readings: Counter[str] = Counter()
    profiler = cProfile.Profile() if args.profile else None
    for round_no in range(round(300 / ROUND_S), args.rounds):
        batch = readings_round(sensors, round_no, rng)
        by_kind: defaultdict[str, list[Reading]] = defaultdict(list)
        for reading in batch:
            by_kind[reading.kind].append(reading)
        evaluate = engine.evaluate
        if profiler is not None:
            profiler.enable()
        for kind, readings in by_kind.items():
            started = time.perf_counter()
            for reading in readings:
                events += len(evaluate(by_id[reading.sensor_id], reading))
            spent = time.perf_counter() - started
            kind_seconds[kind] += spent
            kind_readings[kind] += len(readings)
            elapsed += spent
        # The gateway ticks about once a wall-clock second, whatever the reading rate.
        if elapsed - last_tick >= 1.0 or round_no == args.rounds - 1:
            started = time.perf_counter()
            events += len(engine.tick(START + timedelta(seconds=(round_no + 1) * ROUND_S)))
            elapsed += time.perf_counter() - started
            last_tick = elapsed
            ticks += 1
        if profiler is not None:
            profiler.disable()
        count += len(batch)
    rate = count / elapsed
    print(f"sensors: {args.sensors:,}  rules: {len(engine.rules)}  readings: {count:,}")
    print(f"first 5 min of city time (every sensor's plan compiled): {warmup:.2f} s")
    print(f"alarm events: {events:,}  ticks: {ticks}  time: {elapsed:.2f} s")
    for kind, _share, _interval in MIX:
        if kind_readings[kind]:
            per = kind_seconds[kind] / kind_readings[kind] * 1e6
            print(f"  {kind:<11} {kind_readings[kind]:>9,} readings  {per:5.2f} us/reading")
    print(f"throughput: {rate:,.0f} readings/s  ({rate / TARGET:.2f} x the {TARGET:,}/s target)")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
