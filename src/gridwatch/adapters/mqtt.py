"""The MQTT source: subscribes to gridwatch's topics and hands each message to the pipeline.

A QoS 1 message is acknowledged to the broker only after the handler has returned, so a
crash between arrival and storage leaves the message with the broker, which redelivers it
to our persistent session.
"""

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import aiomqtt

log = logging.getLogger("gridwatch.mqtt")

CHANNELS = ("telemetry", "event", "status")
RECONNECT_BASE_S = 0.5
RECONNECT_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One MQTT message as it arrived."""

    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """Where the broker is, parsed from an `mqtt://` or `mqtts://` URL."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> "MqttEndpoint":
        """Parse `mqtt://[user:pass@]host[:port]`; mqtts defaults to port 8883."""
        parts = urlsplit(url)
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise ValueError(f"mqtt_url must look like mqtt://host:port, not {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


Handler = Callable[[RawMessage], Awaitable[object]]


class MqttSource:
    """Consumes `{prefix}/+/{telemetry,event,status}` at QoS 1 with a persistent session."""

    def __init__(
        self,
        *,
        url: str,
        topic_prefix: str,
        client_id: str,
        handler: Handler,
        on_connection: Callable[[bool], None] = lambda _connected: None,
    ) -> None:
        self._endpoint = MqttEndpoint.parse(url)
        self._topic_prefix = topic_prefix
        self._client_id = client_id
        self._handler = handler
        self._on_connection = on_connection
        self._rng = random.Random()  # noqa: S311 - reconnect jitter, not cryptography

    @property
    def endpoint(self) -> MqttEndpoint:
        """The broker this source connects to."""
        return self._endpoint

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with capped, jittered backoff."""
        failures = 0
        while True:
            try:
                await self._consume()
            except aiomqtt.MqttError as err:
                self._on_connection(False)
                failures += 1
                delay = min(RECONNECT_MAX_S, RECONNECT_BASE_S * 2 ** min(failures, 10))
                delay = delay / 2 + self._rng.uniform(0, delay / 2)
                log.warning(
                    "mqtt connection to %s:%d lost (%s); reconnecting in %.1fs",
                    self._endpoint.host, self._endpoint.port, err, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
            else:
                failures = 0

    async def _consume(self) -> None:
        endpoint = self._endpoint
        client = aiomqtt.Client(
            endpoint.host,
            endpoint.port,
            identifier=self._client_id,
            clean_session=False,
            username=endpoint.username,
            password=endpoint.password,
            tls_context=ssl.create_default_context() if endpoint.tls else None,
            keepalive=30,
        )
        # aiomqtt has no manual-ack switch; its paho client does. Set before connecting so
        # messages the broker kept for our session are not acknowledged before we store them.
        paho_client = client._client
        paho_client.manual_ack_set(True)
        async with client:
            await client.subscribe([(f"{self._topic_prefix}/+/{ch}", 1) for ch in CHANNELS])
            self._on_connection(True)
            log.info("mqtt subscribed to %s/+/{%s}", self._topic_prefix, ",".join(CHANNELS))
            async for message in client.messages:
                payload = message.payload
                await self._handler(
                    RawMessage(
                        topic=message.topic.value,
                        payload=payload if isinstance(payload, bytes) else str(payload).encode(),
                        received_at=datetime.now(UTC),
                    )
                )
                if message.qos > 0:
                    paho_client.ack(message.mid, message.qos)
