"""Test clients: a hand-driven raw MQTT client and a paho-mqtt 2 client wrapped for asyncio."""

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gridwatch.broker._codec import encode
from gridwatch.broker._connection import read_packet
from gridwatch.broker._packets import ConnAck, Connect, Packet

TIMEOUT = 3.0


async def collect(client: aiomqtt.Client, count: int) -> list[aiomqtt.Message]:
    """Receive exactly count messages, failing after TIMEOUT seconds."""
    messages: list[aiomqtt.Message] = []
    async with asyncio.timeout(TIMEOUT):
        async for message in client.messages:
            messages.append(message)
            if len(messages) == count:
                break
    return messages


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll condition until it holds, failing after TIMEOUT seconds."""
    async with asyncio.timeout(TIMEOUT):
        # The broker's counters have no change event to wait on, so polling is the way.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def aiomqtt_client(port: int, **options: Any) -> aiomqtt.Client:
    """An aiomqtt client for the broker on loopback."""
    return aiomqtt.Client("127.0.0.1", port, **options)


class RawClient:
    """Speaks MQTT packet by packet over a real socket, for exact protocol checks."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, port: int) -> Self:
        """Open a TCP connection to the broker on loopback."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self, client_id: str, **fields: Any) -> ConnAck:
        """Send CONNECT and return the CONNACK."""
        await self.send(Connect(client_id, **fields))
        connack = await self.receive()
        assert isinstance(connack, ConnAck)
        return connack

    async def send(self, packet: Packet) -> None:
        """Send one packet."""
        await self.send_bytes(encode(packet))

    async def send_bytes(self, data: bytes) -> None:
        """Send raw bytes."""
        self._writer.write(data)
        await self._writer.drain()

    async def receive(self) -> Packet:
        """Receive one packet, failing after TIMEOUT seconds."""
        async with asyncio.timeout(TIMEOUT):
            return await read_packet(self._reader)

    async def read_until_closed(self) -> bytes:
        """Read until the broker closes the connection (within TIMEOUT); return what came."""
        async with asyncio.timeout(TIMEOUT):
            return await self._reader.read()

    def abort(self) -> None:
        """Drop the connection without DISCONNECT, like a crashed device."""
        self._writer.transport.abort()

    async def close(self) -> None:
        """Close the socket (idempotent)."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


OpenRaw = Callable[[], Awaitable[RawClient]]


class PahoClient:
    """A paho-mqtt 2 client on its own network thread; waits never block the event loop."""

    def __init__(
        self,
        port: int,
        *,
        client_id: str = "",
        clean_session: bool = True,
        will: tuple[str, bytes, int, bool] | None = None,
    ) -> None:
        self.port = port
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            reconnect_on_failure=False,
        )
        if will is not None:
            self.client.will_set(*will)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.session_present: bool | None = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect

    async def __aenter__(self) -> Self:
        self.client.connect_async("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert await asyncio.to_thread(self.connected.wait, TIMEOUT), "paho did not connect"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    async def subscribe(self, topic: str, qos: int) -> list[ReasonCode]:
        """Subscribe and return the granted reason codes."""
        self.client.subscribe(topic, qos)
        return await asyncio.to_thread(self.subacks.get, timeout=TIMEOUT)

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> None:
        """Publish and wait until the QoS flow completes."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        await asyncio.to_thread(info.wait_for_publish, TIMEOUT)
        assert info.is_published()

    async def next_message(self) -> mqtt.MQTTMessage:
        """Return the next received message, failing after TIMEOUT seconds."""
        return await asyncio.to_thread(self.messages.get, timeout=TIMEOUT)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        self.session_present = flags.session_present
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Any,
    ) -> None:
        self.subacks.put(reasons)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        self.disconnected.set()
