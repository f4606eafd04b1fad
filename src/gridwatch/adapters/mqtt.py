"""The MQTT source: paho's network thread fills an inbox, the asyncio side takes it in batches.

One message at a time through asyncio costs more than decoding and evaluating it, so paho runs
its own network thread (reading, parsing, keepalive) and its `on_message` only appends to an
inbox and, when the inbox was empty, wakes the event loop once. The asyncio side takes whatever
has arrived as one batch, hands it to the handler, and acknowledges the batch's QoS 1 messages
only when the handler says they are durable (stored or spooled, cases committed). A crash
before that leaves them with the broker, which redelivers them to our persistent session.
"""

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gridwatch.domain.backoff import Backoff

log = logging.getLogger("gridwatch.mqtt")

CHANNELS = ("telemetry", "event", "status")
RECONNECT_BASE_S = 0.5
RECONNECT_MAX_S = 30.0
KEEPALIVE_S = 30
# Messages taken per batch: small enough that an alarming reading in it becomes a case within
# milliseconds, large enough to amortise the per-batch work.
MAX_BATCH = 1_000
# The inbox stops paho's thread (and so the socket) beyond this; at QoS 1 the broker's
# in-flight window is the real bound, this one matters for QoS 0 floods.
MAX_INBOX = 50_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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


class _Connection:
    """One paho client, one network thread, one inbox; replaced whole on reconnect."""

    def __init__(
        self, endpoint: MqttEndpoint, client_id: str, topics: list[tuple[str, int]]
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.inbox: deque[tuple[str, bytes, int, int, int]] = deque()
        self.arrived = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.lost: asyncio.Future[object] = self.loop.create_future()
        self._notified = False
        self._last_arrival_us = 0
        self._room = threading.Event()
        self._room.set()
        self.stopping = False
        self._topics = topics
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            manual_ack=True,
            reconnect_on_failure=False,
        )
        if endpoint.username is not None:
            client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls:
            client.tls_set_context(ssl.create_default_context())
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    # --- paho's network thread ------------------------------------------------------------

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        inbox = self.inbox
        # Strictly increasing arrival times: a reading without `ts` is stored at its arrival
        # time, and two at the same microsecond would be one point in the store.
        arrival_us = time.time_ns() // 1_000
        if arrival_us <= self._last_arrival_us:
            arrival_us = self._last_arrival_us + 1
        self._last_arrival_us = arrival_us
        inbox.append((message.topic, bytes(message.payload), message.mid, message.qos, arrival_us))
        if not self._notified:
            self._notified = True
            self.loop.call_soon_threadsafe(self.arrived.set)
        if len(inbox) >= MAX_INBOX:
            # Hold paho's thread (and so the socket: TCP backpressure to the broker) until the
            # asyncio side has taken half. If it is stuck for longer than the keepalive, the
            # broker drops us and redelivers what was not acknowledged.
            self._room.clear()
            while not self._room.wait(timeout=1.0) and not self.stopping:
                pass

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._lose(f"broker refused the connection: {reason}")
            return
        client.subscribe(self._topics)

    def _on_subscribe(self, _c: paho.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        failed = [code for code in codes if code.is_failure]
        if failed:
            self._lose(f"subscription refused: {failed[0]}")
            return
        self.loop.call_soon_threadsafe(self.subscribed.set)

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._lose(f"disconnected: {reason}")

    def _lose(self, why: str) -> None:
        def settle() -> None:
            if not self.lost.done():
                self.lost.set_result(why)

        self.loop.call_soon_threadsafe(settle)

    # --- the event loop ---------------------------------------------------------------------

    def take(self) -> list[tuple[str, bytes, int, int, int]]:
        """Up to MAX_BATCH messages that have arrived, oldest first."""
        self._notified = False
        inbox = self.inbox
        count = min(len(inbox), MAX_BATCH)
        batch = [inbox.popleft() for _ in range(count)]
        if inbox:
            self.arrived.set()
        else:
            self.arrived.clear()
        if not self._room.is_set() and len(inbox) < MAX_INBOX // 2:
            self._room.set()
        return batch

    def stop(self) -> None:
        """Disconnect and end the network thread."""
        self.stopping = True
        self._room.set()
        self.client.disconnect()
        self.client.loop_stop()


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
        connection = _Connection(endpoint, self._client_id, self._topics)
        try:
            try:
                await asyncio.to_thread(
                    connection.client.connect, endpoint.host, endpoint.port, KEEPALIVE_S
                )
            except (OSError, ValueError) as err:
                raise MqttConnectionError(str(err)) from err
            if connection.client.loop_start() is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise MqttConnectionError("could not start the network thread")
            # Consume at once: with a persistent session the broker sends what it kept for us
            # right after CONNACK, before the SUBACK; waiting for that would fill the inbox.
            await self._consume(connection, backoff)
        finally:
            await asyncio.to_thread(connection.stop)

    async def _consume(self, connection: _Connection, backoff: Backoff) -> None:
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
                taken = connection.take()
                if not taken:
                    continue
                messages = [
                    RawMessage(
                        topic=topic,
                        payload=payload,
                        received_at=_EPOCH + timedelta(microseconds=arrival_us),
                    )
                    for topic, payload, _mid, _qos, arrival_us in taken
                ]
                durable = await self._handler(messages)
                await unacked.put((durable, [mid for _t, _p, mid, qos, _a in taken if qos > 0]))
                if not connection.inbox:
                    self._on_idle()
        finally:
            acks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acks

    async def _acknowledge(
        self,
        connection: _Connection,
        unacked: asyncio.Queue[tuple[Awaitable[object], list[int]]],
    ) -> object:
        # In order, and only on the connection the messages came on: a message id from an
        # earlier connection may name a different message now.
        client = connection.client
        while True:
            durable, mids = await unacked.get()
            await durable
            for mid in mids:
                client.ack(mid, 1)
