"""Points per second into the embedded telemetry store, and how fast it answers queries.

    .venv/bin/python -m benchmarks.telemetry_embedded [--sensors 1112] [--hours 24] [--no-fsync]

A city of tilt sensors, rain gauges and elevators (cameras left out: they send events) reports
for `--hours` of city time; its points are built before the clock starts (building them is
the pipeline's cost, not the store's) and written in batches of 5,000, as the telemetry writer
sends them. Target: at least 100,000 points/s. Then a raw query (the newest 100 points of one
elevator) and a windowed mean (one elevator's day in 5-minute windows) are timed.
"""

import argparse
import cProfile
import pstats
import random
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from benchmarks.workload import ROUND_S, START, make_sensors, readings_round
from gridwatch.gateway.telemetry.embedded import EmbeddedStore
from gridwatch.gateway.telemetry.query import Aggregate, ReadingsQuery
from gridwatch.gateway.telemetry.schema import Point, PointBuilder

TARGET = 100_000
BATCH = 5_000
QUERY_REPEATS = 50


def make_points(sensor_count: int, hours: float) -> tuple[list[Point], str]:
    """The city's points in arrival order, and the id of one elevator among them."""
    sensors = [s for s in make_sensors(sensor_count) if s.kind != "camera"]
    by_id = {sensor.id: sensor for sensor in sensors}
    builder = PointBuilder()
    rng = random.Random(7)
    points = [
        builder.point(by_id[reading.sensor_id], reading)
        for round_no in range(round(hours * 3600 / ROUND_S))
        for reading in readings_round(sensors, round_no, rng)
    ]
    elevator = next(s.id for s in sensors if s.kind == "elevator")
    print(f"sensors: {len(sensors):,}  points: {len(points):,}  hours of city time: {hours:g}")
    return points, elevator


def time_query(store: EmbeddedStore, query: ReadingsQuery) -> tuple[float, int]:
    """Median milliseconds of the query over QUERY_REPEATS runs, and how many rows it gave."""
    timings = []
    rows = 0
    for _ in range(QUERY_REPEATS):
        started = time.perf_counter()
        rows = len(store.readings(query))
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1e3, rows


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sensors", type=int, default=1_112)  # 1,000 without the cameras
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    points, elevator = make_points(args.sensors, args.hours)
    profiler = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "telemetry.sqlite3"
        with EmbeddedStore(path, retention=timedelta(days=3650), fsync=not args.no_fsync) as store:
            slowest = 0.0
            if profiler is not None:
                profiler.enable()
            started = time.perf_counter()
            for offset in range(0, len(points), BATCH):
                batch_started = time.perf_counter()
                store.write(points[offset : offset + BATCH])
                slowest = max(slowest, time.perf_counter() - batch_started)
            elapsed = time.perf_counter() - started
            if profiler is not None:
                profiler.disable()
            rate = len(points) / elapsed
            stats = store.stats()
            print(f"write: {rate:,.0f} points/s ({rate / TARGET:.2f} x the {TARGET:,}/s target)")
            fsync = not args.no_fsync
            print(f"  batches of {BATCH:,}, slowest {slowest * 1e3:.0f} ms; fsync: {fsync}")
            print(
                f"  on disk: {stats.size_bytes / 2**20:.0f} MiB "
                f"({stats.size_bytes / len(points):.0f} bytes/point), "
                f"{stats.partitions} partitions, {stats.series:,} series"
            )
            end = START + timedelta(hours=args.hours)
            raw = ReadingsQuery(elevator, "elevator", START, end, limit=100)
            ms, rows = time_query(store, raw)
            print(f"raw query, newest 100 points of one elevator: {ms:.2f} ms ({rows} rows)")
            day_start = max(START, end - timedelta(days=1))
            mean = ReadingsQuery(
                elevator, "elevator", day_start, end, 1_000, timedelta(minutes=5), Aggregate.MEAN
            )
            ms, rows = time_query(store, mean)
            print(f"5-minute means over a day of one elevator: {ms:.2f} ms ({rows} windows)")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
