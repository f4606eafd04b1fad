"""The ingest pipeline: topic → sensor → decoded reading → store → rules → cases."""

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gridwatch.adapters.codecs import PayloadError, decode, parse_json_object
from gridwatch.adapters.mqtt import RawMessage
from gridwatch.domain import AlarmEvent, Channel, Reading, Sensor, SensorStatus
from gridwatch.domain.sensors import SENSOR_ID_RE
from gridwatch.gateway.metrics import Metrics
from gridwatch.gateway.registry import SensorRegistry
from gridwatch.gateway.rejects import RejectedMessage, RejectLog, RejectReason
from gridwatch.gateway.telemetry import TelemetryStore
from gridwatch.rules import RuleEngine

log = logging.getLogger("gridwatch.ingest")

CASE_RETRY_BASE_S = 0.5
CASE_RETRY_MAX_S = 30.0


# Maps a vendor payload to the canonical one; raises PayloadError naming the field.
VendorCodec = Callable[[dict[str, Any]], dict[str, Any]]


class CaseSink(Protocol):
    """Applies a reading's alarm events to cases in one transaction."""

    async def __call__(self, sensor: Sensor, alarms: Sequence[AlarmEvent]) -> None:
        """Persist the alarms' effect on cases, or raise TransientError to be retried."""


class TransientError(Exception):
    """The case store is unavailable for now; the same call should be retried."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """The message became a stored reading, with the alarms it caused."""

    reading: Reading
    alarms: tuple[AlarmEvent, ...]


class IngestPipeline:
    """Handles one MQTT message at a time, in arrival order."""

    def __init__(
        self,
        *,
        topic_prefix: str,
        registry: SensorRegistry,
        store: TelemetryStore,
        engine: RuleEngine,
        cases: CaseSink,
        rejects: RejectLog,
        metrics: Metrics,
        vendor_codecs: Mapping[str, VendorCodec] | None = None,
    ) -> None:
        self._prefix_parts = tuple(topic_prefix.split("/"))
        self._registry = registry
        self._store = store
        self._engine = engine
        self._cases = cases
        self._rejects = rejects
        self._metrics = metrics
        self._vendor_codecs = vendor_codecs or {}

    async def handle(self, message: RawMessage) -> Accepted | RejectedMessage:
        """Store the reading and apply its alarms, or set the message aside with the reason."""
        try:
            return await self._handle(message)
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

    def _set_aside(self, rejected: RejectedMessage) -> RejectedMessage:
        self._rejects.add(rejected)
        self._metrics.rejected.labels(rejected.reason.value).inc()
        return rejected

    async def _handle(self, message: RawMessage) -> Accepted | RejectedMessage:
        started = time.perf_counter()
        outcome = self._accept(message)
        if isinstance(outcome, RejectedMessage):
            return self._set_aside(outcome)
        sensor, reading = outcome
        await self._store.write(reading)
        self._metrics.readings.labels(reading.kind, reading.channel.value).inc()
        # A sensor being commissioned is evaluated as if live; its cases are test cases.
        evaluated = (
            sensor.model_copy(update={"status": SensorStatus.ACTIVE})
            if sensor.status is SensorStatus.COMMISSIONING
            else sensor
        )
        alarms = tuple(self._engine.evaluate(evaluated, reading))
        if alarms:
            for alarm in alarms:
                self._metrics.alarms.labels(alarm.transition.value).inc()
                log.info(
                    "alarm %s sensor=%s rule=%s severity=%s",
                    alarm.transition, alarm.sensor_id, alarm.rule_id, alarm.severity,
                )  # fmt: skip
            await self.apply_alarms(sensor, alarms)
        self._metrics.ingest_seconds.observe(time.perf_counter() - started)
        return Accepted(reading=reading, alarms=alarms)

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

        parts = tuple(message.topic.split("/"))
        depth = len(self._prefix_parts)
        if len(parts) != depth + 2 or parts[:depth] != self._prefix_parts:
            return reject(RejectReason.BAD_TOPIC, "expected {prefix}/{sensor_id}/{channel}", None)
        sensor_id, channel_name = parts[depth], parts[depth + 1]
        if not SENSOR_ID_RE.match(sensor_id):
            return reject(RejectReason.BAD_TOPIC, f"invalid sensor id {sensor_id[:64]!r}", None)
        try:
            channel = Channel(channel_name)
        except ValueError:
            return reject(RejectReason.BAD_TOPIC, f"unknown channel {channel_name!r}", sensor_id)
        sensor = self._registry.get(sensor_id)
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

    async def apply_alarms(self, sensor: Sensor, alarms: Sequence[AlarmEvent]) -> None:
        """Apply alarms to cases, retrying while the case store is unavailable."""
        # The message stays unacknowledged while we wait, so the broker holds the stream
        # behind it: backpressure instead of a lost case.
        failures = 0
        while True:
            try:
                await self._cases(sensor, alarms)
            except TransientError as err:
                failures += 1
                delay = min(CASE_RETRY_MAX_S, CASE_RETRY_BASE_S * 2 ** min(failures, 10))
                log.warning(
                    "case store unavailable sensor=%s (%s); retry %d in %.1fs",
                    sensor.id, err, failures, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
            else:
                return
