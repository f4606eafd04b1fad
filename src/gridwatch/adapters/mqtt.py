"""The MQTT source: subscribes with a persistent session and hands messages on in batches.

The connection (adapters.mqtt_wire) parses every packet in each chunk the socket delivers into
an inbox; the source takes whatever has arrived as one batch, hands it to the handler, and
acknowledges the batch's QoS 1 messages, in one write, only when the handler says they are
durable (stored or spooled, cases committed). A crash before that leaves them with the broker,
which redelivers them to our persistent session.
"""

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from gridwatch.adapters.mqtt_wire import SubscriberConnection
from gridwatch.domain.backoff import Backoff

log = logging.getLogger("gridwatch.mqtt")

CHANNELS = ("telemetry", "event", "status")
RECONNECT_BASE_S = 0.5
RECONNECT_MAX_S = 30.0
KEEPALIVE_S = 30
CONNECT_TIMEOUT_S = 10.0
# Messages taken per batch: small enough that an alarming reading in it becomes a case within
# milliseconds, large enough to amortise the per-batch work.
MAX_BATCH = 1_000
# Reading from the socket pauses beyond this; at QoS 1 the broker's in-flight window is the
# real bound, this one matters for QoS 0 floods.
MAX_INBOX = 50_000
# Batches handed on but not yet durable; beyond this the source waits (backpressure).
MAX_UNACKED_BATCHES = 64


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


# Handles a batch (awaiting what must happen before the next batch, such as committed cases)
# and returns what to await before the batch may be acknowledged (its points durable).
BatchHandler = Callable[[Sequence[RawMessage]], Awaitable[Awaitable[object]]]


class MqttConnectionError(Exception):
    """The broker could not be reached, refused us, or the connection dropped."""


class MqttSource:
    """Consumes `{prefix}/+/{telemetry,event,status}` at QoS 1 with a persistent session."""

    def __init__(
        self,
        *,
        url: str,
        topic_prefix: str,
        client_id: str,
        handler: BatchHandler,
        on_connection: Callable[[bool], None] = lambda _connected: None,
        on_idle: Callable[[], None] = lambda: None,
    ) -> None:
        self._endpoint = MqttEndpoint.parse(url)
        self._topics = [(f"{topic_prefix}/+/{channel}", 1) for channel in CHANNELS]
        self._topic_prefix = topic_prefix
        self._client_id = client_id
        self._handler = handler
        self._on_connection = on_connection
        self._on_idle = on_idle

    @property
    def endpoint(self) -> MqttEndpoint:
        """The broker this source connects to."""
        return self._endpoint

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with capped, jittered backoff."""
        backoff = Backoff(base_s=RECONNECT_BASE_S, max_s=RECONNECT_MAX_S)
        while True:
            try:
                await self._session(backoff)
            except MqttConnectionError as err:
                self._on_connection(False)
                delay = backoff.next_delay()
                log.warning(
                    "mqtt connection to %s:%d lost (%s); reconnecting in %.1fs",
                    self._endpoint.host, self._endpoint.port, err, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)

    async def _session(self, backoff: Backoff) -> None:
        endpoint = self._endpoint
        loop = asyncio.get_running_loop()
        connection = SubscriberConnection(
            client_id=self._client_id,
            topics=self._topics,
            keepalive_s=KEEPALIVE_S,
            username=endpoint.username,
            password=endpoint.password,
            max_inbox=MAX_INBOX,
        )
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: connection,
                    endpoint.host,
                    endpoint.port,
                    ssl=ssl.create_default_context() if endpoint.tls else None,
                ),
                timeout=CONNECT_TIMEOUT_S,
            )
            await asyncio.wait_for(asyncio.shield(connection.connacked), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ConnectionError) as err:
            connection.close()
            raise MqttConnectionError(str(err) or type(err).__name__) from err
        connection.subscribe()
        # Consume at once: with a persistent session the broker sends what it kept for us
        # right after CONNACK, before the SUBACK.
        pings = asyncio.create_task(self._ping(connection), name="mqtt-keepalive")
        try:
            await self._consume(connection, backoff)
        finally:
            pings.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pings
            connection.close()

    @staticmethod
    async def _ping(connection: SubscriberConnection) -> None:
        while True:
            await asyncio.sleep(connection.keepalive_s / 2)
            connection.ping()

    async def _consume(self, connection: SubscriberConnection, backoff: Backoff) -> None:
        unacked: asyncio.Queue[tuple[Awaitable[object], list[int]]] = asyncio.Queue(
            MAX_UNACKED_BATCHES
        )
        # A task of this connection's own, cancelled and awaited when the connection ends: the
        # acknowledgements must never outlive it.
        acks: asyncio.Task[object] = asyncio.create_task(
            self._acknowledge(connection, unacked), name="mqtt-acks"
        )
        announced = False
        try:
            while True:
                waits: set[asyncio.Future[object]] = {connection.lost, acks}
                waits.add(asyncio.ensure_future(connection.arrived.wait()))
                if not announced:
                    waits.add(asyncio.ensure_future(connection.subscribed.wait()))
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waits - {connection.lost, acks}:
                        waiter.cancel()
                if connection.lost.done():
                    raise MqttConnectionError(str(connection.lost.result()))
                if acks.done():
                    acks.result()  # re-raises what stopped the acknowledgements
                if not announced and connection.subscribed.is_set():
                    announced = True
                    backoff.reset()
                    self._on_connection(True)
                    log.info("mqtt subscribed to %s/+/{%s}", self._topic_prefix, ",".join(CHANNELS))
                taken = connection.take(MAX_BATCH)
                if not taken:
                    continue
                messages = [
                    RawMessage(
                        topic=topic,
                        payload=payload,
                        received_at=datetime.fromtimestamp(arrival_us / 1e6, UTC),
                    )
                    for topic, payload, _pid, _qos, arrival_us in taken
                ]
                durable = await self._handler(messages)
                await unacked.put((durable, [pid for _t, _p, pid, qos, _a in taken if qos > 0]))
                if not connection.inbox:
                    self._on_idle()
        finally:
            acks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acks

    async def _acknowledge(
        self,
        connection: SubscriberConnection,
        unacked: asyncio.Queue[tuple[Awaitable[object], list[int]]],
    ) -> object:
        # In order, and only on the connection the messages came on: a packet id from an
        # earlier connection may name a different message now.
        while True:
            durable, packet_ids = await unacked.get()
            await durable
            connection.ack(packet_ids)
