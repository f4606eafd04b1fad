"""The writer's backends: InfluxDB (line protocol, spoolable) and the embedded store."""

import asyncio
import gzip
import re
from collections.abc import Sequence
from typing import Protocol

from gridwatch.gateway.telemetry.embedded import EmbeddedStore
from gridwatch.gateway.telemetry.lineprotocol import encode_body, format_lines
from gridwatch.gateway.telemetry.query import ReadingsQuery, Row
from gridwatch.gateway.telemetry.schema import Point

# Level 1: most of gzip's gain on line protocol (repeated tag sets) at a fraction of the CPU.
GZIP_LEVEL = 1
_SENSOR_TAG = re.compile(r"(?:^|[^\\]),sensor_id=((?:[^,\\ ]|\\.)*)")


class LineWriteClient(Protocol):
    """An InfluxDB client that writes one line-protocol body (v1 or v2 API)."""

    async def write(self, body: bytes, *, gzipped: bool) -> None:
        """Write the body, or raise StoreUnavailable / PointsRejected."""


class LineProtocolSink:
    """InfluxDB through either API: items are lines; batches can wait in the spool."""

    def __init__(self, *, name: str, client: LineWriteClient, gzip_here: bool = True) -> None:
        self.name = name
        self._client = client
        # The v2 library compresses by itself; compressing twice would only cost CPU.
        self._gzip_here = gzip_here

    def encode(self, points: Sequence[Point]) -> list[str]:
        """Line protocol, one line per point; unwritable points are left out by the formatter."""
        return format_lines(points)

    async def write(self, items: Sequence[str]) -> None:
        """Write the lines as one request."""
        body = encode_body(items)
        if self._gzip_here:
            # zlib lets go of the GIL while it compresses: in a thread, a megabyte batch is
            # compressed on the other core while the event loop goes on ingesting.
            compressed = await asyncio.to_thread(gzip.compress, body, GZIP_LEVEL)
            await self._client.write(compressed, gzipped=True)
        else:
            await self._client.write(body, gzipped=False)

    def describe(self, item: str) -> tuple[str, str]:
        """The sensor id (from the tag) and the line itself."""
        match = _SENSOR_TAG.search(item)
        return (match.group(1) if match else "-", item)

    def pack(self, items: Sequence[str]) -> bytes:
        """Compressed line protocol, as the spool keeps it."""
        return gzip.compress(encode_body(items), GZIP_LEVEL)

    def unpack(self, body: bytes) -> list[str]:
        """Lines back from the spool."""
        # split("\n"), not splitlines(): string fields may hold \r, \x1c, \u2028 and the like.
        return gzip.decompress(body).decode("utf-8").split("\n")


class EmbeddedSink:
    """The embedded store: items are the points themselves, written in a worker thread."""

    name = "embedded"

    def __init__(self, store: EmbeddedStore) -> None:
        self._store = store

    def encode(self, points: Sequence[Point]) -> list[Point]:
        """Points need no encoding here."""
        return list(points)

    async def write(self, items: Sequence[Point]) -> None:
        """One transaction per batch, off the event loop (the store translates its errors)."""
        await asyncio.to_thread(self._store.write, items)

    def describe(self, item: Point) -> tuple[str, str]:
        """The sensor id and the point as text."""
        series, fields, time_ns = item
        return (series.sensor_id, f"{series.measurement} {fields} {time_ns}")

    async def readings(self, query: ReadingsQuery) -> list[Row]:
        """Read back, off the event loop."""
        return await asyncio.to_thread(self._store.readings, query)
