"""The telemetry writer into InfluxDB 1.x, side by side with bare HTTP writes of the same batches.

    .venv/bin/python -m benchmarks.telemetry_writer [--points 500000] [--sensors 1000] [--repeat 3]
                                                    [--unacked 64]

A private InfluxDB (tests/servers/influxdb.py) on free loopback ports takes the same points of
`--sensors` tilt sensors, rain gauges and elevators (benchmarks.workload's city without its
cameras) in two ways, each run into a fresh database, the two alternating `--repeat` times:

(a) baseline: the points formatted and gzipped beforehand in batches of 5,000 lines, POSTed to
    /write with httpx, 2 requests in flight: what HTTP and InfluxDB cost on their own;
(b) gridwatch: the path `open_telemetry` builds for InfluxDB v1 (TelemetryWriter over a
    LineProtocolSink over InfluxV1Client, the disk spool behind it), fed through `submit()` in
    chunks of 1,000 points as the ingest pipeline does, timed from the first submit to the last
    future resolved. Like the MQTT source, the feeder lets at most `--unacked` submits
    (MAX_UNACKED_BATCHES) wait for their futures before it waits itself: that back-pressure is
    part of what is measured.

Target: (b) at least 0.7 x (a). Points are built before any clock starts (that is the
pipeline's cost), and every run is checked to have stored every point. Each run also shows
the CPU this process and influxd used, in cores, and the formatting and gzip cost of (b) is
timed on its own.
"""

import argparse
import asyncio
import gzip
import os
import random
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import httpx
from tests.servers.influxdb import InfluxDBServer

from benchmarks.workload import ROUND_S, START, make_sensors, readings_round
from gridwatch.adapters.mqtt import MAX_UNACKED_BATCHES
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.rejects import RejectLog
from gridwatch.gateway.settings import Settings
from gridwatch.gateway.telemetry.influx_v1 import GZIP_LEVEL, gzip_body
from gridwatch.gateway.telemetry.lineprotocol import encode_body, format_lines
from gridwatch.gateway.telemetry.schema import Point, PointBuilder
from gridwatch.service.telemetry import open_telemetry

TARGET_RATIO = 0.7
BATCH = 5_000  # lines per /write: the writer's default batch_size
IN_FLIGHT = 2  # the writer's default max_in_flight
CHUNK = 1_000  # points per submit(), as the ingest pipeline hands them over
RUN_TIMEOUT_S = 600.0
HTTP_TIMEOUT_S = 10.0  # the influx_timeout_s default
COST_REPEATS = 3
# A field every point of its measurement carries: their counts add up to the points stored.
ALWAYS_THERE = (("rain_gauge", "battery_v"), ("tilt", "tilt_x_deg"), ("elevator", "floor"))


class Clock:
    """Wall time, and the CPU time of this process and of influxd, from start() to stop()."""

    def __init__(self, influxd_pid: int | None) -> None:
        self._pid = influxd_pid
        self._marks = (0.0, 0.0, 0.0)
        self.wall_s = self.cpu_s = self.influxd_cpu_s = 0.0

    def start(self) -> None:
        """Start measuring."""
        self._marks = (time.perf_counter(), time.process_time(), self._influxd_cpu())

    def stop(self) -> Self:
        """Stop measuring; the figures are in the attributes."""
        wall, cpu, influxd = self._marks
        self.wall_s = time.perf_counter() - wall
        self.cpu_s = time.process_time() - cpu
        self.influxd_cpu_s = self._influxd_cpu() - influxd
        return self

    def cores(self) -> str:
        """CPU use of both processes while measured, in cores."""
        wall = self.wall_s or 1.0
        return f"python {self.cpu_s / wall:.2f} + influxd {self.influxd_cpu_s / wall:.2f} cores"

    def _influxd_cpu(self) -> float:
        """CPU seconds influxd has used so far (user + system), 0 where /proc cannot tell."""
        try:
            stat = Path(f"/proc/{self._pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_points(sensor_count: int, count: int) -> list[Point]:
    """`count` points of the city's first `sensor_count` non-camera sensors, in arrival order."""
    candidates = make_sensors(sensor_count * 10 // 9 + 10)
    sensors = [s for s in candidates if s.kind != "camera"][:sensor_count]
    by_id = {sensor.id: sensor for sensor in sensors}
    builder = PointBuilder()
    rng = random.Random(7)
    points: list[Point] = []
    round_no = 0
    for round_no in range(count):  # every round has a point at least: bounded by count
        if len(points) >= count:
            break
        readings = readings_round(sensors, round_no, rng)
        points.extend(builder.point(by_id[r.sensor_id], r) for r in readings)
    kinds = {
        kind: sum(s.kind == kind for s in sensors) for kind in ("tilt", "rain_gauge", "elevator")
    }
    fields = sum(len(p[1]) for p in points[:count]) / count
    print(
        f"points: {count:,} of {len(sensors):,} sensors {kinds}, {fields:.1f} fields each, "
        f"{round_no * ROUND_S / 3600:.1f} h of city time from {START:%Y-%m-%d}"
    )
    return points[:count]


def batches(lines: Sequence[str]) -> list[bytes]:
    """/write bodies of BATCH lines, gzipped as the writer sends them."""
    return [
        gzip_body(encode_body(lines[offset : offset + BATCH]))
        for offset in range(0, len(lines), BATCH)
    ]


async def baseline(server: InfluxDBServer, database: str, bodies: list[bytes]) -> Clock:
    """(a): the gzipped bodies POSTed to /write, IN_FLIGHT at a time."""
    params = {"db": database, "precision": "ns"}
    headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"}
    waiting = iter(bodies)  # shared by the senders: each takes the next body

    async def sender(http: httpx.AsyncClient) -> None:
        for body in waiting:
            response = await http.post(
                f"{server.url}/write", params=params, content=body, headers=headers
            )
            if response.status_code != httpx.codes.NO_CONTENT:
                raise RuntimeError(f"/write answered {response.status_code}: {response.text}")

    clock = Clock(server.pid)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, trust_env=False) as http:
        clock.start()
        async with asyncio.timeout(RUN_TIMEOUT_S), asyncio.TaskGroup() as group:
            for n in range(IN_FLIGHT):
                group.create_task(sender(http), name=f"baseline-sender-{n}")
        return clock.stop()


async def gridwatch(
    server: InfluxDBServer,
    database: str,
    points: list[Point],
    workdir: Path,
    *,
    unacked_max: int = MAX_UNACKED_BATCHES,
) -> Clock:
    """(b): the points through the telemetry path the service builds for InfluxDB v1."""
    settings = Settings(influx_url=server.url, influx_database=database, data_dir=workdir)
    metrics = Metrics()
    rejects = RejectLog(None)
    clock = Clock(server.pid)
    async with (
        httpx.AsyncClient(timeout=settings.influx_timeout_s, trust_env=False) as http,
        open_telemetry(settings, metrics=metrics, rejects=rejects, http=http) as telemetry,
        asyncio.TaskGroup() as group,
    ):
        running = group.create_task(telemetry.run(metrics), name="telemetry")
        writer = telemetry.writer
        unacked: deque[asyncio.Future[None]] = deque()
        try:
            async with asyncio.timeout(RUN_TIMEOUT_S):
                clock.start()
                for offset in range(0, len(points), CHUNK):
                    if len(unacked) >= unacked_max:
                        await unacked.popleft()  # the MQTT source waits to acknowledge
                    unacked.append(writer.submit(points[offset : offset + CHUNK]))
                    await asyncio.sleep(0)  # the next batch comes in a later event-loop turn
                writer.flush_now()  # nothing more waiting upstream
                await asyncio.gather(*unacked)
                clock.stop()
            spooled = telemetry.spool.batches if telemetry.spool is not None else 0
        finally:
            running.cancel()
    if rejects.counts or spooled:
        raise RuntimeError(f"points set aside {dict(rejects.counts)}, {spooled} batches spooled")
    return clock


def stored_points(server: InfluxDBServer, database: str) -> int:
    """How many points the database holds, counted by a field every point carries."""
    statements = "; ".join(f'SELECT count("{f}") FROM "{m}"' for m, f in ALWAYS_THERE)
    body: dict[str, Any] = server.query(statements, db=database)
    return sum(
        series["values"][0][1] for result in body["results"] for series in result.get("series", ())
    )


def encode_costs(points: list[Point]) -> tuple[float, float]:
    """Seconds (b) spends formatting (per submit) and on encode_body + gzip (per batch)."""
    format_s = gzip_s = float("inf")
    lines: list[str] = []
    for _ in range(COST_REPEATS):
        started = time.perf_counter()
        lines = []
        for offset in range(0, len(points), CHUNK):
            lines.extend(format_lines(points[offset : offset + CHUNK]))
        format_s = min(format_s, time.perf_counter() - started)
        started = time.perf_counter()
        for offset in range(0, len(lines), BATCH):
            gzip.compress(encode_body(lines[offset : offset + BATCH]), GZIP_LEVEL)
        gzip_s = min(gzip_s, time.perf_counter() - started)
    return format_s, gzip_s


def run(server: InfluxDBServer, points: list[Point], *, repeat: int, unacked_max: int) -> None:
    """Alternate (a) and (b) `repeat` times, each into a fresh database; print the figures."""
    bodies = batches(format_lines(points))  # also warms the name caches, as a gateway has them
    sent = sum(len(body) for body in bodies)
    print(f"(a) bodies: {len(bodies)} of {BATCH:,} lines, gzip -1 {sent / len(points):.0f} B/point")
    results: dict[str, list[Clock]] = {"a": [], "b": []}
    with tempfile.TemporaryDirectory(prefix="gw-bench-writer-") as tmp:
        for attempt in range(1, repeat + 1):
            for label in ("a", "b"):
                database = f"bench_{label}_{attempt}"
                server.create_database(database)
                try:
                    if label == "a":
                        clock = asyncio.run(baseline(server, database, bodies))
                    else:
                        workdir = Path(tmp) / database
                        clock = asyncio.run(
                            gridwatch(server, database, points, workdir, unacked_max=unacked_max)
                        )
                    stored = stored_points(server, database)
                finally:
                    server.drop_database(database)
                if stored != len(points):
                    raise RuntimeError(f"run {label}: {stored:,} of {len(points):,} points stored")
                results[label].append(clock)
                name = "(a) bare httpx" if label == "a" else "(b) gridwatch "
                print(
                    f"run {attempt}/{repeat} {name}: {len(points) / clock.wall_s:10,.0f} points/s"
                    f"  {clock.wall_s:6.2f} s  {clock.cores()}"
                )
    rate_a = statistics.median(len(points) / c.wall_s for c in results["a"])
    rate_b = statistics.median(len(points) / c.wall_s for c in results["b"])
    ratio = rate_b / rate_a
    print(
        f"(a) baseline, pre-gzipped POSTs, {IN_FLIGHT} in flight: {rate_a:10,.0f} points/s (median)"
    )
    print(
        f"(b) TelemetryWriter -> InfluxDB v1:           {rate_b:10,.0f} points/s (median; "
        f"submits of {CHUNK:,}, at most {unacked_max} unacknowledged)"
    )
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"(b)/(a): {ratio:.2f} x  (target {TARGET_RATIO} x: {verdict})")
    format_s, gzip_s = encode_costs(points)
    wall_b = statistics.median(c.wall_s for c in results["b"])
    serial = len(points) / (len(points) / rate_a + format_s + gzip_s)
    print(
        f"in (b): format_lines {format_s:.2f} s ({format_s / wall_b:.0%} of its {wall_b:.2f} s), "
        f"encode_body + gzip -1 {gzip_s:.2f} s ({gzip_s / wall_b:.0%})"
    )
    print(f"(a) plus that work done serially: {serial:,.0f} points/s ({serial / rate_a:.2f} x (a))")


def main() -> None:
    """Start a private InfluxDB, run the benchmark, print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=500_000)
    parser.add_argument("--sensors", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--unacked", type=int, default=MAX_UNACKED_BATCHES)
    args = parser.parse_args()
    points = make_points(args.sensors, args.points)
    with (
        tempfile.TemporaryDirectory(prefix="gw-bench-influxdb-") as tmp,
        InfluxDBServer(workdir=Path(tmp)) as server,
    ):
        print(f"InfluxDB at {server.url} (pid {server.pid})")
        run(server, points, repeat=args.repeat, unacked_max=args.unacked)


if __name__ == "__main__":
    main()
