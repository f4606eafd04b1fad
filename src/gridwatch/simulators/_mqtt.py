"""MQTT transport: broker URLs and one connection per simulated device."""

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

import aiomqtt

from gridwatch.simulators._errors import BrokerError

logger = logging.getLogger("gridwatch.simulators")

_TIMEOUT_S: Final = 10.0  # per MQTT operation (CONNACK, PUBACK)
_CLOSE_TIMEOUT_S: Final = 5.0
_DROP_TIMEOUT_S: Final = 5.0
_MAX_ATTEMPTS: Final = 8  # about a minute and a half of backoff before giving up
_BACKOFF_BASE_S: Final = 0.5
_BACKOFF_CAP_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is: host, port, TLS and optional credentials."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def client(
        self,
        *,
        identifier: str,
        will: aiomqtt.Will | None = None,
        protocol: aiomqtt.ProtocolVersion | None = None,
    ) -> aiomqtt.Client:
        """A new (not yet connected) client for this broker."""
        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=identifier,
            will=will,
            protocol=protocol,
            username=self.username,
            password=self.password,
            tls_context=ssl.create_default_context() if self.tls else None,
            timeout=_TIMEOUT_S,
        )


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Parse `mqtt://host:port` or `mqtts://host:port` (TLS, default context)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"MQTT URL must look like mqtt://host:port or mqtts://host:port: {url!r}")
    try:
        port = parts.port
    except ValueError as err:
        raise ValueError(f"MQTT URL has a bad port: {url!r}") from err
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"MQTT URL takes no path, query or fragment: {url!r}")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def backoff_s(attempt: int) -> float:
    """Delay before reconnect attempt `attempt` (1-based): doubling, capped, with jitter."""
    ceiling = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2.0 ** (attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not secrets


class DeviceLink:
    """One simulated device's own MQTT connection, so its last will is its own."""

    def __init__(
        self,
        *,
        broker: BrokerAddress,
        prefix: str,
        sensor_id: str,
        on_published: Callable[[str, str], None] | None = None,
    ) -> None:
        self.sensor_id = sensor_id
        self._broker = broker
        self._prefix = prefix
        self._client: aiomqtt.Client | None = None
        # Told (sensor id, topic suffix) after every acknowledged publish, statuses included,
        # so counts stay right across the reconnects this class does on its own.
        self._on_published = on_published or _ignore

    @property
    def connected(self) -> bool:
        """True between a connect and a drop or close."""
        return self._client is not None

    def topic(self, suffix: str) -> str:
        """The device's topic for `suffix` (telemetry, event, status)."""
        return f"{self._prefix}/{self.sensor_id}/{suffix}"

    async def connect(self) -> None:
        """Connect with a retained `offline` will at QoS 1, then publish a retained `online`."""
        if self._client is None:
            await self._connect()

    async def publish(self, suffix: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the PUBACK; reconnect with backoff if the link broke."""
        for attempt in itertools.count(1):
            try:
                client = self._client or await self._connect()
                await client.publish(self.topic(suffix), payload, qos=1, retain=retain)
                self._on_published(self.sensor_id, suffix)
            except (aiomqtt.MqttError, BrokerError) as err:
                if attempt >= _MAX_ATTEMPTS:
                    raise BrokerError(
                        str(self._broker), f"publish failed: {err}", sensor_id=self.sensor_id
                    ) from err
                delay = backoff_s(attempt)
                logger.warning(
                    "sensor=%s publish failed (%s); reconnecting in %.1f s",
                    self.sensor_id,
                    err,
                    delay,
                )
                await self._forget()
                await asyncio.sleep(delay)
            else:
                return

    async def drop(self) -> None:
        """Cut the link without DISCONNECT, as a power cut would: the broker sends the will."""
        client, self._client = self._client, None
        if client is None:
            return
        # aiomqtt has no abrupt close; half-closing the paho socket is what a dying device looks
        # like to the broker (EOF without DISCONNECT). It is the one place the simulators reach
        # into aiomqtt's paho client.
        sock = client._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        # Only the write side is shut, so the read side sees EOF once the broker has handled
        # the loss (published the will, closed its end): a reconnect under the same client id
        # cannot overtake the will. The message iterator ends with MqttError at that EOF.
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(_DROP_TIMEOUT_S):
                async for _ in client.messages:
                    pass
        await self._exit(client)
        logger.info("sensor=%s dropped its connection (abrupt offline)", self.sensor_id)

    async def close(self) -> bool:
        """Publish a retained `offline` and disconnect cleanly; True if `offline` went out."""
        client, self._client = self._client, None
        if client is None:
            return False
        sent = False
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await client.publish(self.topic("status"), b"offline", qos=1, retain=True)
            self._on_published(self.sensor_id, "status")
            sent = True
        except (aiomqtt.MqttError, TimeoutError) as err:
            logger.warning("sensor=%s could not publish offline: %s", self.sensor_id, err)
        await self._exit(client)
        logger.info("sensor=%s offline (clean stop)", self.sensor_id)
        return sent

    async def _connect(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self.topic("status"), b"offline", qos=1, retain=True)
        client = self._broker.client(identifier=f"gwsim-{self.sensor_id}", will=will)
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as err:
            raise BrokerError(
                str(self._broker), f"cannot connect: {err}", sensor_id=self.sensor_id
            ) from err
        self._client = client
        try:
            await client.publish(self.topic("status"), b"online", qos=1, retain=True)
            self._on_published(self.sensor_id, "status")
        except aiomqtt.MqttError as err:
            await self._forget()
            raise BrokerError(
                str(self._broker), f"cannot publish online: {err}", sensor_id=self.sensor_id
            ) from err
        logger.info("sensor=%s online at %s", self.sensor_id, self._broker)
        return client

    async def _forget(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._exit(client)

    async def _exit(self, client: aiomqtt.Client) -> None:
        # Leaves the client's context: a DISCONNECT if still connected, a no-op if the link
        # already broke. Bounded, since a dead broker never answers.
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await client.__aexit__(None, None, None)


def _ignore(sensor_id: str, suffix: str) -> None:
    """Default publish observer: nobody is counting."""
