"""Line protocol formatting on the write path: tilt points (5 float fields) per second.

    .venv/bin/python -m benchmarks.telemetry_lineprotocol [--sensors 10000] [--points 200000]

Points are built before the clock starts (PointBuilder's cost is the pipeline's); the clock
covers `format_lines`, then `encode_body`, then gzip level 1 as the writer does once per batch.
Target: at least 500,000 points/s for `format_lines`. When influxdb-client is installed, its
`Point(...).to_line_protocol()` is timed on the same points for comparison.
"""

import argparse
import random
import time
import zlib
from collections.abc import Callable

from benchmarks.workload import START, make_sensors, readings_round
from gridwatch.domain import Sensor
from gridwatch.gateway.telemetry.lineprotocol import encode_body, format_lines
from gridwatch.gateway.telemetry.schema import Point, PointBuilder

TARGET = 500_000
REPEAT = 5


def tilt_points(sensors: int, count: int) -> list[Point]:
    """`count` points of tilt sensors, as the pipeline builds them (tilt_deg derived)."""
    tilts = [s for s in make_sensors(sensors * 10 // 3) if s.kind == "tilt"][:sensors]
    by_id: dict[str, Sensor] = {s.id: s for s in tilts}
    builder = PointBuilder()
    rng = random.Random(7)
    points: list[Point] = []
    round_no = 0
    while len(points) < count:
        readings = readings_round(tilts, round_no, rng)
        points.extend(builder.point(by_id[r.sensor_id], r) for r in readings)
        round_no += 1
    return points[:count]


def best_of(run: Callable[[], object]) -> float:
    """Seconds of the fastest of REPEAT runs."""
    best = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def influxdb_client_rate(points: list[Point]) -> float | None:
    """Points/s of influxdb-client's Point formatting, None when it is not installed."""
    try:
        from influxdb_client import Point as ClientPoint
        from influxdb_client import WritePrecision
    except ImportError:
        return None

    def run() -> list[str]:
        lines = []
        for series, fields, time_ns in points:
            point = ClientPoint(series.measurement)
            for key, value in series.tags:
                point.tag(key, value)
            for key, value in fields.items():
                point.field(key, value)
            lines.append(point.time(time_ns, WritePrecision.NS).to_line_protocol())
        return lines

    return len(points) / best_of(run)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=200_000)
    args = parser.parse_args()
    points = tilt_points(args.sensors, args.points)
    fields = sum(len(p[1]) for p in points) / len(points)
    format_lines(points)  # warm the name caches, as a running gateway has them
    format_s = best_of(lambda: format_lines(points))
    lines = format_lines(points)
    encode_s = best_of(lambda: encode_body(lines))
    body = encode_body(lines)
    gzip_s = best_of(lambda: zlib.compress(body, 1, wbits=31))
    gzipped = zlib.compress(body, 1, wbits=31)
    rate = len(points) / format_s
    # The floor: float repr alone (shortest round-trip digits) is most of the cost.
    floor_s = best_of(lambda: [[repr(v) for v in p[1].values()] for p in points])
    total = len(points) / (format_s + encode_s + gzip_s)
    print(
        f"tilt points: {len(points):,} of {args.sensors:,} sensors, {fields:.1f} fields each, "
        f"from {START:%Y-%m-%d}"
    )
    print(f"format_lines:            {rate:12,.0f} points/s  (best of {REPEAT})")
    print(f"target {TARGET:,}:        {rate / TARGET:12.2f} x the target")
    print(f"repr of the values only: {len(points) / floor_s:12,.0f} points/s (the floor)")
    print(f"+ encode_body + gzip -1: {total:12,.0f} points/s")
    print(
        f"body: {len(body) / len(points):.0f} bytes/point, gzip level 1 "
        f"{len(gzipped) / len(points):.0f} bytes/point"
    )
    client = influxdb_client_rate(points)
    if client is None:
        print("influxdb-client not installed: no comparison")
    else:
        print(
            f"influxdb-client Point:   {client:12,.0f} points/s; ours {rate / client:.1f} x faster"
        )


if __name__ == "__main__":
    main()
