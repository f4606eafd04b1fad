"""The ingest pipeline: topic → sensor → decoded reading → store → rules → cases, in batches."""

import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from gridwatch.adapters.codecs import PayloadError, decode, decode_fields, parse_json_object
from gridwatch.adapters.modbus import PolledReading
from gridwatch.adapters.mqtt import RawMessage
from gridwatch.domain import AlarmEvent, Channel, Reading, Sensor, SensorStatus
from gridwatch.domain.sensors import SENSOR_ID_RE
from gridwatch.gateway.alarms import AlarmService, RaisedAlarms
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.registry import SensorRegistry
from gridwatch.gateway.rejects import RejectedMessage, RejectLog, RejectReason
from gridwatch.gateway.telemetry.latest import LatestReadings
from gridwatch.gateway.telemetry.schema import Point, PointBuilder

log = logging.getLogger("gridwatch.ingest")

_CHANNELS = {channel.value: channel for channel in Channel}


# Maps a vendor payload to the canonical one; raises PayloadError naming the field.
VendorCodec = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Accepted:
    """The message became a stored reading, with the alarms it caused."""

    reading: Reading
    alarms: tuple[AlarmEvent, ...]


class PointWriter(Protocol):
    """Where points go; the future resolves once they are durable (stored or spooled)."""

    def submit(self, points: Sequence[Point]) -> Awaitable[object]:
        """Queue points for the store."""


class IngestPipeline:
    """Handles MQTT messages a batch at a time, in arrival order.

    A batch is decoded and evaluated in one pass with no awaits, its points go to the writer in
    one submit, and its alarms are applied to cases before the next batch: so a batch costs
    one event-loop turn, not one per message, and an alarming reading still becomes a case
    within the batch's few milliseconds.
    """

    def __init__(
        self,
        *,
        topic_prefix: str,
        registry: SensorRegistry,
        writer: PointWriter,
        latest: LatestReadings,
        alarms: AlarmService,
        rejects: RejectLog,
        metrics: Metrics,
        vendor_codecs: Mapping[str, VendorCodec] | None = None,
    ) -> None:
        self._prefix_list = topic_prefix.split("/")
        self._depth = len(self._prefix_list)
        self._registry = registry
        self._writer = writer
        self._latest = latest
        self._points = PointBuilder()
        self._alarms = alarms
        self._rejects = rejects
        self._metrics = metrics
        self._vendor_codecs = vendor_codecs or {}
        self._reading_counters: dict[tuple[str, str], Any] = {}

    async def handle(self, message: RawMessage) -> Accepted | RejectedMessage:
        """Handle one message and wait until its reading is durable (tests, tools)."""
        outcomes: list[Accepted | RejectedMessage] = []
        durable = await self.handle_batch([message], outcomes=outcomes)
        await durable
        return outcomes[0]

    async def handle_batch(
        self,
        messages: Sequence[RawMessage],
        *,
        outcomes: list[Accepted | RejectedMessage] | None = None,
    ) -> Awaitable[object]:
        """Decode, store and evaluate a batch; apply its alarms; return its durability.

        The caller acknowledges the messages once the returned awaitable completes: then every
        reading is stored or spooled and every case change is committed.
        """
        started = time.perf_counter()
        points: list[Point] = []
        raised: list[RaisedAlarms] = []
        counts: Counter[tuple[str, str]] = Counter()
        for message in messages:
            outcome = self._process(message, points, raised, counts)
            if outcomes is not None:
                outcomes.append(outcome)
        self._metrics.ingest_batch_size.observe(len(messages))
        return await self._finish(points, raised, counts, started)

    async def handle_polled(self, polled: Sequence[PolledReading]) -> Awaitable[object]:
        """Like `handle_batch`, for readings a poller produced (Modbus): no topic, no JSON."""
        started = time.perf_counter()
        points: list[Point] = []
        raised: list[RaisedAlarms] = []
        counts: Counter[tuple[str, str]] = Counter()
        for item in polled:
            self._process_polled(item, points, raised, counts)
        return await self._finish(points, raised, counts, started)

    async def _finish(
        self,
        points: list[Point],
        raised: list[RaisedAlarms],
        counts: Counter[tuple[str, str]],
        started: float,
    ) -> Awaitable[object]:
        """Submit a batch's points, count its readings, apply its alarms; its durability."""
        durable = self._writer.submit(points)
        self._count_readings(counts)
        await self._alarms.apply(raised)
        self._metrics.ingest_seconds.observe(time.perf_counter() - started)
        return durable

    def _process(
        self,
        message: RawMessage,
        points: list[Point],
        raised: list[RaisedAlarms],
        counts: Counter[tuple[str, str]],
    ) -> Accepted | RejectedMessage:
        try:
            outcome = self._accept(message)
            if isinstance(outcome, RejectedMessage):
                return self._set_aside(outcome)
            sensor, reading = outcome
            alarms = self._take(sensor, reading, points, raised, counts)
        except Exception as err:
            # The isolation boundary: a bug one message trips must not stop ingest for every
            # sensor. The message is kept in the reject log, so it can be replayed after a fix.
            log.exception("ingest failed topic=%s", message.topic)
            return self._set_aside(
                RejectedMessage(
                    topic=message.topic,
                    payload=message.payload,
                    received_at=message.received_at,
                    reason=RejectReason.INTERNAL_ERROR,
                    detail=f"{type(err).__name__}: {err}",
                )
            )
        return Accepted(reading=reading, alarms=alarms)

    def _process_polled(
        self,
        item: PolledReading,
        points: list[Point],
        raised: list[RaisedAlarms],
        counts: Counter[tuple[str, str]],
    ) -> None:
        def set_aside(reason: RejectReason, detail: str) -> None:
            self._set_aside(
                RejectedMessage(
                    topic=f"modbus/{item.sensor_id}/{item.channel.value}",
                    payload=orjson.dumps(item.values),
                    received_at=item.ts,
                    reason=reason,
                    detail=detail,
                    sensor_id=item.sensor_id,
                )
            )

        sensor = self._registry.get(item.sensor_id)
        if sensor is None:
            set_aside(RejectReason.UNKNOWN_SENSOR, "no sensor registered with this id")
            return
        if sensor.status is SensorStatus.RETIRED:
            set_aside(RejectReason.SENSOR_RETIRED, "the sensor is retired")
            return
        try:
            reading = decode_fields(
                sensor_id=sensor.id,
                kind=sensor.kind,
                channel=item.channel,
                fields=item.values,
                ts=item.ts,
                received_at=item.ts,
            )
        except PayloadError as err:
            set_aside(RejectReason.BAD_REGISTER_VALUE, str(err))
            return
        try:
            self._take(sensor, reading, points, raised, counts)
        except Exception as err:  # the isolation boundary, as for MQTT messages
            log.exception("ingest failed sensor=%s (modbus)", sensor.id)
            set_aside(RejectReason.INTERNAL_ERROR, f"{type(err).__name__}: {err}")

    def _take(
        self,
        sensor: Sensor,
        reading: Reading,
        points: list[Point],
        raised: list[RaisedAlarms],
        counts: Counter[tuple[str, str]],
    ) -> tuple[AlarmEvent, ...]:
        """Store, remember and evaluate an accepted reading; note its alarms for the batch."""
        points.append(self._points.point(sensor, reading))
        self._latest.put(reading)
        counts[reading.kind, reading.channel.value] += 1
        alarms = self._alarms.evaluate(sensor, reading)
        if alarms:
            raised.append(self._alarms.raised(sensor, alarms))
        return alarms

    def _count_readings(self, counts: Counter[tuple[str, str]]) -> None:
        # Once per batch and label set: a metric update costs more than a reading's decoding.
        for key, count in counts.items():
            counter = self._reading_counters.get(key)
            if counter is None:
                counter = self._reading_counters[key] = self._metrics.readings.labels(*key)
            counter.inc(count)

    def _set_aside(self, rejected: RejectedMessage) -> RejectedMessage:
        self._rejects.add(rejected)
        self._metrics.rejected.labels(rejected.reason.value).inc()
        return rejected

    def _accept(self, message: RawMessage) -> tuple[Sensor, Reading] | RejectedMessage:
        def reject(reason: RejectReason, detail: str, sensor_id: str | None) -> RejectedMessage:
            return RejectedMessage(
                topic=message.topic,
                payload=message.payload,
                received_at=message.received_at,
                reason=reason,
                detail=detail,
                sensor_id=sensor_id,
            )

        parts = message.topic.split("/")
        depth = self._depth
        if len(parts) != depth + 2 or parts[:depth] != self._prefix_list:
            return reject(RejectReason.BAD_TOPIC, "expected {prefix}/{sensor_id}/{channel}", None)
        sensor_id, channel_name = parts[depth], parts[depth + 1]
        # Registered ids were validated on the way in: only an unknown one needs the pattern.
        sensor = self._registry.get(sensor_id)
        if sensor is None and not SENSOR_ID_RE.match(sensor_id):
            return reject(RejectReason.BAD_TOPIC, f"invalid sensor id {sensor_id[:64]!r}", None)
        channel = _CHANNELS.get(channel_name)
        if channel is None:
            return reject(RejectReason.BAD_TOPIC, f"unknown channel {channel_name!r}", sensor_id)
        if sensor is None:
            return reject(
                RejectReason.UNKNOWN_SENSOR, "no sensor registered with this id", sensor_id
            )
        if sensor.status is SensorStatus.RETIRED:
            return reject(RejectReason.SENSOR_RETIRED, "the sensor is retired", sensor_id)
        try:
            reading = decode(
                sensor_id=sensor_id,
                kind=sensor.kind,
                channel=channel,
                payload=self._canonical_payload(sensor, channel, message.payload),
                received_at=message.received_at,
            )
        except PayloadError as err:
            return reject(RejectReason.BAD_PAYLOAD, str(err), sensor_id)
        return sensor, reading

    def _canonical_payload(self, sensor: Sensor, channel: Channel, payload: bytes) -> bytes:
        codec_name = getattr(sensor.protocol, "codec", None)
        if codec_name is None or channel is Channel.STATUS:
            return payload
        codec = self._vendor_codecs.get(codec_name)
        if codec is None:
            raise PayloadError("protocol.codec", f"no vendor codec {codec_name!r} is loaded")
        return json.dumps(codec(parse_json_object(payload))).encode()
