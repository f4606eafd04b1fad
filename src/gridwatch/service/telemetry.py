"""Builds the telemetry path the settings ask for: InfluxDB (v1 or v2 API) or the embedded store."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import httpx

from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.rejects import RejectedMessage, RejectLog, RejectReason
from gridwatch.gateway.settings import Settings
from gridwatch.gateway.telemetry import TelemetryReader
from gridwatch.gateway.telemetry.embedded import EmbeddedStore
from gridwatch.gateway.telemetry.errors import PointsRejected, StoreUnavailable
from gridwatch.gateway.telemetry.influx_v1 import InfluxV1Client
from gridwatch.gateway.telemetry.influx_v2 import InfluxV2Client
from gridwatch.gateway.telemetry.sinks import EmbeddedSink, LineProtocolSink
from gridwatch.gateway.telemetry.spool import DiskSpool
from gridwatch.gateway.telemetry.writer import Sink, TelemetryWriter

log = logging.getLogger("gridwatch.telemetry")

PRUNE_EVERY_S = 300.0
SPOOL_AGE_EVERY_S = 5.0
STORE_REJECTED_TOPIC = "(telemetry store)"


@dataclass
class Telemetry:
    """The writer the pipeline feeds, the reader the API asks, and how to check the store."""

    writer: TelemetryWriter[Any]
    reader: TelemetryReader
    ping: Callable[[], Awaitable[bool]]
    description: str
    spool: DiskSpool | None = None
    embedded: EmbeddedStore | None = None

    async def run(self, metrics: Metrics) -> None:
        """The writer, plus retention for the embedded store or spool-age metrics."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.writer.run(), name="telemetry-writer")
            if self.embedded is not None:
                group.create_task(self._prune(self.embedded), name="telemetry-retention")
            if self.spool is not None:
                group.create_task(self._spool_age(self.spool, metrics), name="telemetry-spool-age")

    @staticmethod
    async def _prune(store: EmbeddedStore) -> None:
        while True:
            removed = await asyncio.to_thread(store.prune, datetime.now(UTC))
            if removed:
                log.info("telemetry retention: %d points older than the window removed", removed)
                # Each call is bounded in time; go on at once while there is more to remove.
                continue
            await asyncio.sleep(PRUNE_EVERY_S)

    @staticmethod
    async def _spool_age(spool: DiskSpool, metrics: Metrics) -> None:
        while True:
            metrics.telemetry_spool_age_seconds.set(spool.oldest_age_s(datetime.now(UTC)))
            await asyncio.sleep(SPOOL_AGE_EVERY_S)


@contextlib.asynccontextmanager
async def open_telemetry(
    settings: Settings, *, metrics: Metrics, rejects: RejectLog, http: httpx.AsyncClient
) -> AsyncIterator[Telemetry]:
    """The configured telemetry path, closed on exit."""

    def set_aside(sensor_id: str, text: str, reason: str) -> None:
        metrics.rejected.labels(RejectReason.STORE_REJECTED.value).inc()
        rejects.add(
            RejectedMessage(
                topic=STORE_REJECTED_TOPIC,
                payload=text.encode(),
                received_at=datetime.now(UTC),
                reason=RejectReason.STORE_REJECTED,
                detail=reason,
                sensor_id=sensor_id,
            )
        )

    def writer_for(sink: Sink[Any], spool: DiskSpool | None = None) -> TelemetryWriter[Any]:
        return TelemetryWriter(
            sink=sink,
            metrics=metrics,
            on_rejected=set_aside,
            spool=spool,
            batch_size=settings.telemetry_batch_size,
            max_age_s=settings.telemetry_batch_age_s,
            max_in_flight=settings.telemetry_max_in_flight,
        )

    if not settings.influx_url:
        store = EmbeddedStore(
            settings.data_dir / "telemetry.sqlite3",
            retention=timedelta(days=settings.telemetry_retention_days),
        )
        store.open()
        try:
            embedded = EmbeddedSink(store)
            yield Telemetry(
                writer=writer_for(embedded),
                reader=embedded,
                ping=_always_up,
                description=f"embedded store {settings.data_dir / 'telemetry.sqlite3'}",
                embedded=store,
            )
        finally:
            store.close()
        return

    token = settings.influx_token.get_secret_value() if settings.influx_token else None
    password = settings.influx_password.get_secret_value() if settings.influx_password else None
    # Reading back goes through InfluxQL's /query, which 1.x serves and 2.x/3.x keep for
    # compatibility (a v2 bucket is queried as the database of the same name).
    database = settings.influx_bucket if settings.influx_api == "v2" else settings.influx_database
    assert database is not None
    reader = InfluxV1Client(
        url=settings.influx_url,
        database=database,
        http=http,
        username=settings.influx_username,
        password=password,
        token=token,
    )
    spool = DiskSpool(settings.data_dir / "spool", max_bytes=settings.telemetry_spool_max_bytes)
    v2: InfluxV2Client | None = None
    try:
        if settings.influx_api == "v2":
            # The settings validator has refused v2 without them.
            assert token
            assert settings.influx_org
            assert settings.influx_bucket
            v2 = InfluxV2Client(
                url=settings.influx_url,
                token=token,
                org=settings.influx_org,
                bucket=settings.influx_bucket,
                timeout_s=settings.influx_timeout_s,
            )
            sink = LineProtocolSink(name="influxdb-v2", client=v2, gzip_here=False)
            ping: Callable[[], Awaitable[bool]]
            ping = v2.ping
        else:
            await _create_database(reader, settings.influx_url, database)
            sink = LineProtocolSink(name="influxdb-v1", client=_CreatingDatabase(reader))
            ping = reader.ping
        if spool.batches:
            log.info(
                "telemetry spool holds %d batches (%d points) from before; replaying them",
                spool.batches, spool.points,
            )  # fmt: skip
        yield Telemetry(
            writer=writer_for(sink, spool),
            reader=reader,
            ping=ping,
            description=f"InfluxDB {settings.influx_api} at {settings.influx_url} ({database})",
            spool=spool,
        )
    finally:
        if v2 is not None:
            v2.close()
        spool.close()


class _CreatingDatabase:
    """Writes that create the database when InfluxDB says it does not exist (yet)."""

    def __init__(self, client: InfluxV1Client) -> None:
        self._client = client

    async def write(self, body: bytes, *, gzipped: bool) -> None:
        """Write; on 'database not found' create it and write once more."""
        try:
            await self._client.write(body, gzipped=gzipped)
        except PointsRejected as err:
            # InfluxDB was down when we started, or someone dropped the database.
            if err.status != HTTPStatus.NOT_FOUND:
                raise
            await self._client.create_database()
            await self._client.write(body, gzipped=gzipped)


async def _create_database(client: InfluxV1Client, url: str, database: str) -> None:
    # A store that is down at start is not fatal: batches wait in the spool until it is back,
    # and the first write that finds no database creates it.
    try:
        await client.create_database()
    except StoreUnavailable as err:
        log.warning("InfluxDB at %s unavailable at start (%s); spooling until it is", url, err)
    else:
        log.info("InfluxDB at %s: database %s ready", url, database)


async def _always_up() -> bool:
    return True
