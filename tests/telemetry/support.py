"""A running embedded telemetry path for tests that need somewhere real to put readings."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.telemetry import ReadingsQuery, Row
from gridwatch.gateway.telemetry.embedded import EmbeddedStore
from gridwatch.gateway.telemetry.sinks import EmbeddedSink
from gridwatch.gateway.telemetry.writer import TelemetryWriter


@dataclass
class EmbeddedTelemetry:
    """The writer the pipeline feeds and the reader the API asks, on one store file."""

    writer: TelemetryWriter[Any]
    reader: EmbeddedSink
    store: EmbeddedStore


@contextlib.asynccontextmanager
async def embedded_telemetry(
    directory: Path, *, metrics: Metrics | None = None
) -> AsyncIterator[EmbeddedTelemetry]:
    """An embedded store under `directory` with its writer running (batches sent at once)."""
    store = EmbeddedStore(directory / "telemetry.sqlite3")
    store.open()
    sink = EmbeddedSink(store)
    writer: TelemetryWriter[Any] = TelemetryWriter(
        sink=sink,
        metrics=metrics or Metrics(),
        on_rejected=lambda *_: None,
        max_age_s=0.005,
    )
    task = asyncio.create_task(writer.run(), name="test-telemetry-writer")
    try:
        yield EmbeddedTelemetry(writer=writer, reader=sink, store=store)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.close()


class _NoTelemetry:
    """For API tests that never read telemetry: any read is a test bug, said loudly."""

    async def readings(self, query: ReadingsQuery) -> list[Row]:
        raise AssertionError(f"this test has no telemetry store, yet read {query}")


NO_TELEMETRY = _NoTelemetry()
