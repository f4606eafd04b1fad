"""The KPI report over a year of one million cases on PostgreSQL (target: under 2 s).

    .venv/bin/python -m benchmarks.kpi [--cases 1000000] [--runs 3] [--keep] [--explain]

Creates a database of its own on the test server (GRIDWATCH_TEST_PG_ADMIN_URL, default
postgres@127.0.0.1:5432), migrates it, and COPYs in a year (2025, Beijing time) of cases with
the history a case of that status would have (about 5.5 entries a case; the query reads only
the cases table). Then VACUUM ANALYZE, and GET /api/v1/kpi's own function,
`cases.kpi.report`, grouped by street over the whole year: the best of `--runs` and its
ratio to the target. The server runs with its stock settings (shared_buffers 128 MB,
work_mem 4 MB). `--explain` then prints EXPLAIN (ANALYZE, BUFFERS) of each of the report's
statements, run one at a time: where the time goes. The database is dropped afterwards unless
`--keep`.
"""

import argparse
import asyncio
import math
import random
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from rich.progress import Progress
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from tests.servers.postgres import admin_url, scratch_urls

from gridwatch.cases import kpi
from gridwatch.gateway.db import create_engine, migrate, session_factory

TARGET_S = 2.0
YEAR_START = datetime(2024, 12, 31, 16, tzinfo=UTC)  # 2025-01-01 00:00 Beijing
YEAR_END = datetime(2025, 12, 31, 16, tzinfo=UTC)
NOW = YEAR_END + timedelta(days=2)
CHUNK = 50_000
DISTRICTS = {"110101": 5, "110102": 5, "110105": 9, "110106": 3, "110107": 2, "110108": 8}
CATEGORIES = {
    "event:0102": 30, "event:0504": 15, "event:0505": 15, "event:0506": 10, "event:0507": 8,
    "component:0307": 6, "component:0601": 6, "event:0401": 5, "component:0101": 5,
}  # fmt: skip
KINDS = ("manual", "camera", "rain_gauge", "tilt", "elevator")
# Reports follow the day: few at night, most between 08:00 and 20:00 local time.
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 4, 8, 12, 12, 12, 11, 9, 10, 11, 11, 10, 9, 7, 5, 4, 3, 2, 1]
OPEN_STATUSES = ("reported", "dispatched", "accepted", "handled", "postponed")
CASE_COLUMNS = (
    "id", "status", "severity", "category", "kind", "title", "grid", "unit", "occurrences",
    "alarm_active", "opened_at", "updated_at", "last_seen_at", "due_at", "overdue", "drill",
    "version", "last_sequence", "evidence", "maintenance", "closed_at", "rework_count",
    "dispatch_due_at", "dispatched_at", "handled_at", "auto_dispatched", "supervision_level",
    "reassignments", "overdue_count",
)  # fmt: skip
HISTORY_COLUMNS = ("case_id", "at", "actor", "action", "from_status", "to_status", "note", "data")


@dataclass(frozen=True, slots=True)
class Generated:
    """One chunk of rows to COPY."""

    cases: list[tuple[Any, ...]]
    history: list[tuple[Any, ...]]


def _grid(rng: random.Random) -> str | None:
    if rng.random() < 0.02:
        return None
    district = rng.choices(list(DISTRICTS), weights=list(DISTRICTS.values()))[0]
    # Skewed within each level, so some streets and grid units are hotspots.
    street = min(int(rng.expovariate(0.25)) + 1, 30)
    community = min(int(rng.expovariate(0.2)) + 1, 40)
    unit = min(int(rng.expovariate(0.15)) + 1, 60)
    return f"{district}{street:03d}{community:03d}{unit:03d}"


def _case(rng: random.Random, n: int) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    day = YEAR_START + timedelta(days=rng.randrange(365))
    hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
    opened = day + timedelta(hours=hour, seconds=rng.randrange(3600))
    case_id = f"GW-{opened:%Y%m%d}-{n:010x}"
    grid = _grid(rng)
    maintenance = rng.random() < 0.08
    drill = rng.random() < 0.01
    roll = rng.random()
    status = (
        "closed" if roll < 0.80 else "evaluated" if roll < 0.89 else
        "cancelled" if roll < 0.94 else rng.choice(OPEN_STATUSES)
    )  # fmt: skip
    dispatch_due = (
        opened + timedelta(seconds=rng.choice((300, 900, 1800, 3600)))
        if rng.random() < 0.9
        else None
    )
    dispatched = None
    if status not in {"reported", "cancelled"} or (status == "cancelled" and rng.random() < 0.5):
        dispatched = opened + timedelta(seconds=rng.expovariate(1 / 600))
    handled = closed = due = None
    finished = status in {"closed", "evaluated"}
    if finished and dispatched is not None:
        handled = dispatched + timedelta(seconds=rng.lognormvariate(math.log(4 * 3600), 1.0))
        closed = handled + timedelta(seconds=rng.expovariate(1 / 1800))
    elif status == "cancelled":
        closed = opened + timedelta(seconds=rng.expovariate(1 / 3600))
    else:
        due = (dispatched or opened) + timedelta(hours=rng.choice((1, 4, 24, 72)))
    overdue = due is not None and due < NOW and rng.random() < 0.6
    ever_overdue = overdue or (finished and rng.random() < 0.08)
    auto = dispatched is not None and rng.random() < 0.55
    rework = 0 if not finished else rng.choices((0, 1, 2), weights=(95, 4, 1))[0]
    row = (
        case_id, status, rng.choice(("blue", "yellow", "orange", "red")),
        rng.choices(list(CATEGORIES), weights=list(CATEGORIES.values()))[0],
        rng.choice(KINDS), "bench case", grid,
        None if dispatched is None else f"unit-{rng.randrange(200)}", 1, False, opened,
        closed or handled or dispatched or opened, opened, due, overdue, drill, 1, 1, "{}",
        maintenance, closed, rework, dispatch_due, dispatched, handled, auto,
        1 if overdue else 0, 1 if auto and rng.random() < 0.07 else 0, 1 if ever_overdue else 0,
    )  # fmt: skip
    return row, _history(case_id, status, opened, dispatched, handled, closed, ever_overdue)


def _history(
    case_id: str,
    status: str,
    opened: datetime,
    dispatched: datetime | None,
    handled: datetime | None,
    closed: datetime | None,
    ever_overdue: bool,
) -> list[tuple[Any, ...]]:
    steps: list[tuple[datetime, str, str | None, str]] = [(opened, "open", None, "reported")]
    if dispatched is not None:
        steps.append((dispatched, "dispatch", "reported", "dispatched"))
    if handled is not None and closed is not None:
        steps += [
            (dispatched or opened, "accept", "dispatched", "accepted"),
            (handled, "feedback", "accepted", "handled"),
            (closed, "verify", "handled", "verified"),
            (closed, "close", "verified", "closed"),
        ]
    elif status == "cancelled" and closed is not None:
        steps.append((closed, "cancel", "reported", "cancelled"))
    if ever_overdue:
        steps.append((opened + timedelta(hours=1), "overdue", status, status))
    return [(case_id, at, "bench", action, old, new, "", "{}") for at, action, old, new in steps]


def generate(cases: int, seed: int = 2025) -> Iterator[Generated]:
    """The cases and their history in chunks of CHUNK cases."""
    rng = random.Random(seed)
    for first in range(0, cases, CHUNK):
        chunk = Generated([], [])
        for n in range(first, min(first + CHUNK, cases)):
            row, history = _case(rng, n)
            chunk.cases.append(row)
            chunk.history.extend(history)
        yield chunk


async def load(dsn: str, cases: int) -> int:
    """COPY the generated rows in; the number of history entries."""
    connection = await asyncpg.connect(dsn)
    entries = 0
    try:
        # The benchmark's own database, filled in order: skip the per-row foreign-key checks.
        await connection.execute("SET session_replication_role = replica")
        with Progress() as progress:
            task = progress.add_task("COPY cases and history", total=cases)
            for chunk in generate(cases):
                await connection.copy_records_to_table(
                    "cases", records=chunk.cases, columns=CASE_COLUMNS
                )
                await connection.copy_records_to_table(
                    "case_history", records=chunk.history, columns=HISTORY_COLUMNS
                )
                entries += len(chunk.history)
                progress.advance(task, len(chunk.cases))
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return entries


QUERY = kpi.KpiQuery(start=YEAR_START, end=YEAR_END, group_by=kpi.GroupBy.STREET)


async def measure(url: str, runs: int) -> tuple[list[float], kpi.KpiReport]:
    """Wall times of `runs` reports for the year by street, and the last report."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    times = []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            report = await kpi.report(sessions=sessions, query=QUERY)
            times.append(time.perf_counter() - started)
    finally:
        await engine.dispose()
    return times, report


async def explain(dsn: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of each of the report's statements, run one at a time."""
    connection = await asyncpg.connect(dsn)
    plans = []
    try:
        for name, statement in kpi.statements(QUERY, "postgresql").items():
            sql = statement.compile(
                dialect=PGDialect_asyncpg(), compile_kwargs={"literal_binds": True}
            )
            plan = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            plans.append(f"\n{name}:\n" + "\n".join(row[0] for row in plan))
    finally:
        await connection.close()
    return "\n".join(plans)


async def run(cases: int, runs: int, keep: bool, with_plans: bool) -> None:
    """Create, fill, measure and drop the database."""
    admin = admin_url()
    database = scratch_urls(admin, f"gw_bench_kpi_{secrets.token_hex(4)}")
    control = await asyncpg.connect(admin)
    try:
        await control.execute(f'CREATE DATABASE "{database.name}"')
        engine = create_engine(database.url)
        await migrate(engine)
        await engine.dispose()
        started = time.perf_counter()
        entries = await load(database.dsn, cases)
        print(f"loaded {cases:,} cases, {entries:,} history entries and analysed them")
        print(f"in {time.perf_counter() - started:.0f} s; database {database.name}")
        times, report = await measure(database.url, runs)
        plans = await explain(database.dsn) if with_plans else ""
    finally:
        if not keep:
            await control.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
        await control.close()
    _print(report, times)
    if plans:
        print(plans)


def _print(report: kpi.KpiReport, times: list[float]) -> None:
    totals = report.totals
    print(
        f"year 2025 by street: {len(report.groups):,} streets, {totals.reported:,} cases "
        f"({totals.closed:,} closed of {totals.due_to_close:,} due, {totals.overdue:,} overdue)"
    )
    rates = ("closure_rate", "on_time_closure_rate", "rework_rate", "timely_dispatch_rate")
    print("  " + ", ".join(f"{name} {getattr(totals, name):.4f}" for name in rates))
    print(
        f"  time to dispatch mean/p90 {totals.time_to_dispatch_s.mean}/"
        f"{totals.time_to_dispatch_s.p90} s; to close {totals.time_to_close_s.mean}/"
        f"{totals.time_to_close_s.p90} s; top hotspot {report.hotspots[0]}"
    )
    print("runs: " + ", ".join(f"{t:.3f} s" for t in times))
    best = min(times)
    print(f"best {best:.3f} s; target {TARGET_S:.1f} s: {best / TARGET_S:.2f} of the budget")


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database for EXPLAIN")
    parser.add_argument("--explain", action="store_true", help="print each statement's plan")
    args = parser.parse_args()
    asyncio.run(run(args.cases, args.runs, args.keep, args.explain))


if __name__ == "__main__":
    main()
