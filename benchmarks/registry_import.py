"""Importing 10,000 sensors through the API, as an installer would (target: under 5 s).

Run: .venv/bin/python -m benchmarks.registry_import [--database-url URL]
Prints the wall time of the POST /api/v1/sensors/import call and its ratio to the target.
"""

import argparse
import asyncio
import csv
import io
import tempfile
import time
from pathlib import Path

import httpx
from tests.integration.apiclient import running_api

from gridwatch.api.keys import create_key
from gridwatch.api.roles import Role
from gridwatch.gateway.db import create_engine, migrate, session_factory

ROWS = 10_000
TARGET_S = 5.0


def sensors_csv(rows: int) -> bytes:
    """A CSV of `rows` rain gauges and tilt sensors spread over grid units."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "kind", "grid", "lat", "lon", "address", "interval_s", "status", "tags"])
    for n in range(rows):
        kind = "rain_gauge" if n % 2 else "tilt"
        grid = f"110101{n % 20:03d}{n % 30:03d}{n % 100:03d}"
        writer.writerow(
            [
                f"S-{n:05d}",
                kind,
                grid,
                39.9 + n * 1e-6,
                116.4,
                f"site {n}",
                300,
                "active",
                f"batch=bench;n={n}",
            ]
        )
    return out.getvalue().encode()


async def measure(database_url: str) -> float:
    """Seconds for one import of ROWS sensors into a fresh database."""
    engine = create_engine(database_url)
    await migrate(engine)
    sessions = session_factory(engine)
    body = sensors_csv(ROWS)
    async with running_api(sessions) as api:
        async with sessions() as session, session.begin():
            _, key = await create_key(session=session, role=Role.INSTALLER, name="bench")
        started = time.perf_counter()
        response = await api.client.post(
            "/api/v1/sensors/import",
            content=body,
            headers={"Authorization": f"Bearer {key}", "content-type": "text/csv"},
            timeout=httpx.Timeout(120.0),
        )
        elapsed = time.perf_counter() - started
    await engine.dispose()
    assert response.status_code == 201, response.text
    assert response.json() == {"imported": ROWS}
    return elapsed


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        elapsed = asyncio.run(measure(url))
    print(f"import of {ROWS} sensors ({url.split(':')[0]}): {elapsed:.2f} s")
    print(f"target {TARGET_S:.1f} s: {elapsed / TARGET_S:.2f} of the budget")


if __name__ == "__main__":
    main()
