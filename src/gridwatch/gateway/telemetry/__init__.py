"""Telemetry: the schema readings are stored with, the stores, the batched writer and its spool."""

from typing import Protocol

from gridwatch.gateway.telemetry.latest import LatestReadings
from gridwatch.gateway.telemetry.query import Aggregate, ReadingsQuery, Row

__all__ = ["Aggregate", "LatestReadings", "ReadingsQuery", "Row", "TelemetryReader"]


class TelemetryReader(Protocol):
    """Reads stored points back, the same way from every backend."""

    async def readings(self, query: ReadingsQuery) -> list[Row]:
        """Rows of one sensor per the query's semantics; StoreUnavailable when it cannot."""
