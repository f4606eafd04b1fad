"""Alarms into cases on PostgreSQL: 1,000 alarms/s sustained without a duplicate case (issue 9).

    .venv/bin/python -m benchmarks.case_throughput [--sensors 2000] [--alarms 60000]
                                                   [--writers 8] [--batch 20] [--overlap]
                                                   [--keep]

Creates a database of its own on the test server (GRIDWATCH_TEST_PG_ADMIN_URL, default
postgres@127.0.0.1:5432) and migrates it. The stream: --sensors rain gauges, each with a
rainstorm episode (rules `burst` and, half the time, `sum_3h`, both in case group
`rainstorm`, so one case per gauge) raised blue, then repeats and escalations a reading (5 s)
apart, then cleared; some gauges get a battery episode (a maintenance case of its own); later
rounds bring the rain back on a random half of the gauges within hours (the case is still
open, as nobody closes cases here: the recurrence folds into it), until --alarms events.
Ordered by time, so gauges interleave.

--writers asyncio tasks apply it through one real AlarmService (its retries) and a real
DatabaseCaseSink (shipped policy), --batch readings in one `apply` (one transaction), as the
gateway applies the alarms of one batch of messages, as fast as they can (no pacing: the
figure is the sustainable ceiling; --batch 1 is the worst case, a trickle of single messages).
Each writer owns the gauges `index % writers`; with --overlap the `sum_3h` alarms of a gauge
go to the next writer, so two writers race on the same case key (as two gateway processes
evaluating different rules of one case group would). The run stops at the end of the stream
or after --max-seconds.

Printed: alarms/s, readings/s and batches (transactions)/s over the run and the ratio to the target,
apply latency p50/p99 (one batch, retries included), transient retries, statements per
transaction, alarms lost to errors the service does not retry. Then the checks in SQL against a
model of the stream actually applied: no two open cases share an open_fingerprint; exactly
one case per (sensor, case_key) raised; occurrences as applied; the outbox has one `opened`,
one `alarm_cleared` per clear, (without --overlap) exactly the escalations the model expects, and
consecutive sequences 1..last_sequence. Exit status 1 when a check failed. The database is
dropped afterwards unless --keep.
"""

import argparse
import asyncio
import logging
import random
import secrets
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import event
from tests.servers.postgres import admin_url, scratch_urls

from benchmarks.stats import percentile
from gridwatch.cases.policy import shipped_policy
from gridwatch.domain import AlarmEvent, AlarmTransition, Sensor, Severity
from gridwatch.gateway.alarms import AlarmService, RaisedAlarms, TransientError
from gridwatch.gateway.db import create_engine, migrate, session_factory
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.registry import SensorRegistry
from gridwatch.rules import RulePack
from gridwatch.service.case_sink import DatabaseCaseSink

TARGET = 1_000.0
T0 = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
READING_S = 5
GROUP = "rainstorm"
SEVERITIES = tuple(Severity)
RAIN_RULES = ("burst", "sum_3h")
BATTERY_RULE = "battery_low"


@dataclass(frozen=True, slots=True)
class Step:
    """One reading's alarms of one sensor: one `apply`, one transaction."""

    seq: int
    sensor: int
    alarms: tuple[AlarmEvent, ...]


@dataclass(slots=True)
class Stats:
    """What the writers saw."""

    applied: list[Step] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    attempts: int = 0
    transient: Counter[str] = field(default_factory=Counter)
    # Alarms the service gave up on (an error it does not retry): its failure counter.
    lost_alarms: int = 0
    statements: int = 0


def rain_gauge(n: int) -> Sensor:
    """A distinct active rain gauge, as tests.integration.factories.rain_sensor builds one."""
    return Sensor.model_validate(
        {"id": f"RG-{n:05d}", "kind": "rain_gauge", "grid": "110101001001001", "interval_s": 5}
    )


def _episode(
    rng: random.Random, sensor_id: str, rule: str, start: datetime
) -> tuple[list[AlarmEvent], datetime]:
    """Raised, repeats and escalations one reading apart, cleared; and when it ended."""
    maintenance = rule == BATTERY_RULE
    group = None if maintenance else GROUP
    category = "component:0601" if maintenance else "event:0401"
    rank = 0 if maintenance else rng.choices(range(4), weights=(6, 3, 1, 1))[0]
    events: list[AlarmEvent] = []
    at = start
    for i in range(rng.randint(2, 7)):
        transition = AlarmTransition.RAISED if i == 0 else AlarmTransition.REPEATED
        if i and not maintenance and rank < 3 and rng.random() < 0.3:
            rank += 1
            transition = AlarmTransition.ESCALATED
        severity = SEVERITIES[rank]
        events.append(
            AlarmEvent(
                sensor_id=sensor_id,
                rule_id=rule,
                transition=transition,
                severity=severity,
                category=category,
                title=f"{rule} at {sensor_id} ({severity})",
                at=at,
                values={"rain_mm": round(rng.uniform(2, 40), 1)},
                maintenance=maintenance,
                window="3h" if rule == "sum_3h" else None,
                why=f"{rule} over its threshold ({severity})",
                case_group=group,
            )
        )
        at += timedelta(seconds=READING_S)
    last = events[-1]
    cleared = AlarmEvent(
        sensor_id=sensor_id,
        rule_id=rule,
        transition=AlarmTransition.CLEARED,
        severity=last.severity,
        category=category,
        title=last.title,
        at=at,
        values={"rain_mm": 0.0},
        maintenance=maintenance,
        case_group=group,
    )
    return [*events, cleared], at


def generate(sensors: int, alarms: int, seed: int) -> list[tuple[int, AlarmEvent]]:
    """(sensor index, alarm) in time order, --alarms of them (the last episodes cut short)."""
    rng = random.Random(seed)
    stream: list[tuple[int, AlarmEvent]] = []
    ends = [T0] * sensors
    first = True
    while len(stream) < alarms:
        # Later rounds are the rain coming back on some gauges, minutes to hours later.
        chosen = range(sensors) if first else rng.sample(range(sensors), max(1, sensors // 2))
        for n in chosen:
            sensor_id = rain_gauge(n).id
            gap = rng.randrange(0, 600) if first else rng.randrange(600, 6 * 3600)
            start = ends[n] + timedelta(seconds=gap - gap % READING_S)
            ends[n] = start
            rules = ["burst"] + (["sum_3h"] if rng.random() < 0.5 else [])
            if first and rng.random() < 0.2:
                rules.append(BATTERY_RULE)
            for rule in rules:
                offset = timedelta(seconds=READING_S * rng.randrange(3))
                events, end = _episode(rng, sensor_id, rule, start + offset)
                stream.extend((n, e) for e in events)
                ends[n] = max(ends[n], end)
        first = False
    stream.sort(key=lambda item: (item[1].at, item[0]))
    return stream[:alarms]


def writer_of(sensor: int, alarm: AlarmEvent, writers: int, overlap: bool) -> int:
    """Who applies the alarm: the sensor's owner; with --overlap `sum_3h` goes next door."""
    owner = sensor % writers
    return (owner + 1) % writers if overlap and alarm.rule_id == "sum_3h" else owner


def queues(
    stream: Sequence[tuple[int, AlarmEvent]], writers: int, overlap: bool
) -> list[list[Step]]:
    """Each writer's readings in order: a sensor's alarms of one instant go in one apply."""
    grouped: dict[tuple[int, int, datetime], list[AlarmEvent]] = defaultdict(list)
    for sensor, alarm in stream:
        grouped[writer_of(sensor, alarm, writers, overlap), sensor, alarm.at].append(alarm)
    out: list[list[Step]] = [[] for _ in range(writers)]
    for seq, ((writer, sensor, _at), alarms) in enumerate(grouped.items()):
        out[writer].append(Step(seq, sensor, tuple(alarms)))
    return out


class CountingSink:
    """The real sink, with its attempts and transient failures counted on the way."""

    def __init__(self, sink: DatabaseCaseSink, stats: Stats) -> None:
        self._sink = sink
        self._stats = stats

    async def __call__(self, batch: Sequence[RaisedAlarms]) -> None:
        """Apply through the real sink."""
        self._stats.attempts += 1
        try:
            await self._sink(batch)
        except TransientError as err:
            self._stats.transient[str(err).split("\n")[0][:90]] += 1
            raise


async def write(
    service: AlarmService,
    sensors: list[Sensor],
    steps: list[Step],
    batch: int,
    stats: Stats,
    deadline: float,
) -> None:
    """Apply the writer's readings in order, `batch` readings a transaction, until the deadline."""
    for start in range(0, len(steps), batch):
        if time.perf_counter() > deadline:
            return
        chunk = steps[start : start + batch]
        started = time.perf_counter()
        await service.apply([service.raised(sensors[step.sensor], step.alarms) for step in chunk])
        stats.latencies.append(time.perf_counter() - started)
        stats.applied.extend(chunk)


async def progress(stats: Stats, started: float, total: int) -> None:
    """A line every 10 s so a slow run shows it is alive."""
    while True:
        await asyncio.sleep(10)
        done = sum(len(s.alarms) for s in stats.applied)
        elapsed = time.perf_counter() - started
        print(f"  {elapsed:5.0f} s: {done:,}/{total:,} alarms, {done / elapsed:,.0f}/s")


@dataclass(slots=True)
class Expected:
    """A case key's outcome under apply_alarm, from the alarms applied to it."""

    opened: int = 0
    occurrences: int = 0
    escalated: int = 0
    cleared: int = 0
    severity: Severity = Severity.BLUE
    sensor_id: str = ""


def model(applied: list[Step]) -> dict[str, Expected]:
    """What apply_alarm makes of the applied readings, in stream order (per key, the writer's)."""
    keys: dict[str, Expected] = {}
    for step in sorted(applied, key=lambda s: s.seq):
        for alarm in step.alarms:
            key = alarm.case_fingerprint
            found = keys.get(key)
            if found is None:
                if alarm.transition is not AlarmTransition.CLEARED:
                    keys[key] = Expected(1, 1, 0, 0, alarm.severity, alarm.sensor_id)
            elif alarm.transition is AlarmTransition.CLEARED:
                found.cleared += 1
            else:
                found.occurrences += 1
                if alarm.severity > found.severity:
                    found.severity = alarm.severity
                    found.escalated += 1
    return keys


async def verify(dsn: str, expected: dict[str, Expected], overlap: bool) -> list[str]:
    """The duplicate and outbox checks in SQL; the problems found."""
    connection = await asyncpg.connect(dsn)
    try:
        shared = await connection.fetch(
            "SELECT open_fingerprint, count(*) AS n FROM cases "
            "WHERE open_fingerprint IS NOT NULL GROUP BY 1 HAVING count(*) > 1"
        )
        cases = await connection.fetch(
            "SELECT id, sensor_id, case_key, occurrences, severity, last_sequence FROM cases"
        )
        outbox = await connection.fetch(
            "SELECT case_id, count(*) AS n, count(DISTINCT sequence) AS distinct_n, "
            "min(sequence) AS first, max(sequence) AS last, "
            "count(*) FILTER (WHERE type = 'gridwatch.case.opened') AS opened, "
            "count(*) FILTER (WHERE type = 'gridwatch.case.escalated') AS escalated, "
            "count(*) FILTER (WHERE type = 'gridwatch.case.alarm_cleared') AS cleared, "
            "count(*) FILTER (WHERE type NOT IN ('gridwatch.case.opened', "
            "'gridwatch.case.escalated', 'gridwatch.case.alarm_cleared')) AS other "
            "FROM outbox_events GROUP BY case_id"
        )
    finally:
        await connection.close()
    problems = [f"open_fingerprint {r['open_fingerprint']} on {r['n']} open cases" for r in shared]
    print(f"  open cases sharing an open_fingerprint: {len(shared)}")

    by_key: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in cases:
        by_key[row["case_key"]].append(row)
    wrong_count = [
        f"{key}: {len(by_key.get(key, []))} cases, expected {int(key in expected)}"
        for key in sorted(set(by_key) | set(expected))
        if len(by_key.get(key, [])) != int(key in expected)
    ]
    print(
        f"  cases {len(cases):,} for {len(expected):,} (sensor, case_key) raised; "
        f"keys with other than one case: {len(wrong_count)}"
    )
    problems += wrong_count

    events = {r["case_id"]: r for r in outbox}
    mismatched: list[str] = []
    gaps: list[str] = []
    for key, rows in by_key.items():
        want = expected.get(key)
        if want is None or len(rows) != 1:
            continue
        case = rows[0]
        got = events.get(case["id"])
        if got is None:
            mismatched.append(f"{key}: no outbox events")
            continue
        if not (
            got["n"] == got["distinct_n"] == got["last"] == case["last_sequence"]
            and got["first"] == 1
        ):
            gaps.append(
                f"{key}: {got['n']} events, sequences {got['first']}..{got['last']} "
                f"({got['distinct_n']} distinct), last_sequence {case['last_sequence']}"
            )
        have = (got["opened"], got["cleared"], got["other"], case["occurrences"], case["severity"])
        need = (1, want.cleared, 0, want.occurrences, want.severity.value)
        # Two writers on one key interleave their severities: only a bound is certain.
        escalations_ok = (
            got["escalated"] <= want.severity.rank
            if overlap
            else got["escalated"] == want.escalated
        )
        if have != need or not escalations_ok:
            mismatched.append(
                f"{key}: (opened, cleared, other, occurrences, severity) {have} expected {need}; "
                f"escalated {got['escalated']} expected "
                f"{'<= ' + str(want.severity.rank) if overlap else want.escalated}"
            )
    total = sum(r["n"] for r in outbox)
    print(
        f"  outbox events {total:,}; cases whose events or occurrences differ from the "
        f"model: {len(mismatched)}; with sequences not 1..last_sequence: {len(gaps)}"
    )
    return problems + mismatched + gaps


async def run(args: argparse.Namespace) -> bool:
    """Create the database, apply the stream, check it; True when every check passed."""
    sensors = [rain_gauge(n) for n in range(args.sensors)]
    stream = generate(args.sensors, args.alarms, args.seed)
    work = queues(stream, args.writers, args.overlap)
    readings = sum(len(q) for q in work)
    episodes = sum(1 for _, a in stream if a.transition is AlarmTransition.RAISED)
    print(
        f"stream: {len(stream):,} alarms in {readings:,} readings, {episodes:,} episodes on "
        f"{args.sensors:,} gauges over {(stream[-1][1].at - T0) / timedelta(hours=1):.1f} h "
        f"of alarm time; {args.writers} writers"
        + (", sum_3h alarms on the next writer (shared case keys)" if args.overlap else "")
    )

    admin = admin_url()
    database = scratch_urls(admin, f"gw_bench_cases_{secrets.token_hex(4)}")
    control = await asyncpg.connect(admin)
    stats = Stats()
    try:
        await control.execute(f'CREATE DATABASE "{database.name}"')
        engine = create_engine(database.url)
        await migrate(engine)

        def counted(*_: Any) -> None:
            stats.statements += 1

        event.listen(engine.sync_engine, "before_cursor_execute", counted)
        sink = DatabaseCaseSink(
            sessions=session_factory(engine),
            metrics=Metrics(),
            on_committed=lambda: None,
            policy=shipped_policy(),
        )
        service_metrics = Metrics()
        service = AlarmService(
            rules=RulePack(()),
            registry=SensorRegistry(sensors),
            cases=CountingSink(sink, stats),
            metrics=service_metrics,
        )
        stats.statements = 0
        started = time.perf_counter()
        ticker = asyncio.create_task(progress(stats, started, len(stream)))
        try:
            # A writer stuck in AlarmService's retries must not hold the run past its bound.
            async with asyncio.timeout(args.max_seconds + 60):
                await asyncio.gather(
                    *(
                        write(
                            service, sensors, steps, args.batch, stats, started + args.max_seconds
                        )
                        for steps in work
                    )
                )
        except TimeoutError:
            print("  writers still retrying 60 s after --max-seconds: cancelled")
        finally:
            ticker.cancel()
        elapsed = time.perf_counter() - started
        await engine.dispose()
        failed = service_metrics.registry.get_sample_value("gridwatch_case_failures_total")
        stats.lost_alarms = int(failed or 0)

        applied_alarms = sum(len(s.alarms) for s in stats.applied)
        _print(stats, elapsed, applied_alarms, len(stream))
        print("checks (SQL, against a model of the readings applied):")
        problems = await verify(database.dsn, model(stats.applied), args.overlap)
        if stats.lost_alarms:
            problems.append(f"{stats.lost_alarms} alarms lost to errors the sink does not retry")
        if args.keep:
            print(f"database kept: {database.name}")
    finally:
        if not args.keep:
            await control.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
        await control.close()
    if problems:
        print(f"FAILED: {len(problems)} problems")
        for problem in problems[:20]:
            print(f"  {problem}")
        return False
    print("OK: no duplicate case, outbox complete and in sequence")
    return True


def _print(stats: Stats, elapsed: float, applied: int, total: int) -> None:
    readings = len(stats.applied)
    rate = applied / elapsed
    print(
        f"applied {applied:,} of {total:,} alarms in {readings:,} readings in {elapsed:.1f} s"
        f" ({readings / elapsed:,.0f} readings/s, {len(stats.latencies) / elapsed:,.0f} batches/s)"
    )
    print(
        f"  apply latency (one batch, one transaction, retries included) p50 "
        f"{percentile(stats.latencies, 0.5) * 1000:.1f} ms, p99 "
        f"{percentile(stats.latencies, 0.99) * 1000:.1f} ms, max "
        f"{max(stats.latencies, default=0) * 1000:.1f} ms"
    )
    retries = sum(stats.transient.values())
    print(
        f"  sink calls {stats.attempts:,}; transient retries {retries:,}"
        + "".join(f"\n    {n:,} x {reason}" for reason, n in stats.transient.most_common(5))
    )
    per_call = stats.statements / max(1, stats.attempts)
    print(
        f"  SQL statements {stats.statements:,}: {per_call:.1f} a transaction (and BEGIN, COMMIT)"
    )
    if stats.lost_alarms:
        print(f"  LOST (not retried, logged above) {stats.lost_alarms:,} alarms")
    print(f"{rate:,.0f} alarms/s (target {TARGET:,.0f}): {rate / TARGET:.2f}× of the target")  # noqa: RUF001


def main() -> None:
    """Parse the arguments, run, exit 1 when a check failed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sensors", type=int, default=2_000)
    parser.add_argument("--alarms", type=int, default=60_000, help="alarm events in the stream")
    parser.add_argument("--writers", type=int, default=8, help="concurrent asyncio writers")
    parser.add_argument(
        "--batch", type=int, default=20, help="readings a writer applies in one transaction"
    )
    parser.add_argument("--overlap", action="store_true", help="two writers share each gauge")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop applying after")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    if min(args.sensors, args.alarms, args.batch) < 1 or args.writers < (2 if args.overlap else 1):
        parser.error("--sensors, --alarms, --batch >= 1; --writers >= 1 (2 with --overlap)")
    # Each case event is logged at INFO; at this rate the log would be the benchmark.
    logging.basicConfig(level=logging.ERROR)
    sys.exit(0 if asyncio.run(run(args)) else 1)


if __name__ == "__main__":
    main()
