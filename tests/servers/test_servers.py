"""The server fixtures work, use the shipped settings, and detect the failures they exist for."""

import asyncio
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.servers.mosquitto import MosquittoServer, MosquittoStartError
from tests.servers.ports import LOOPBACK, free_port
from tests.servers.postgres import (
    PostgresUnavailableError,
    ScratchDatabase,
    database_exists,
    scratch_database,
)
from tests.servers.webhook_receiver import WebhookReceiver, new_secret, signed_headers

TIMEOUT_S = 10.0


class MqttProbe:
    """A paho-mqtt 2 client over MQTT 3.1.1 that records received payloads."""

    def __init__(
        self,
        server: MosquittoServer,
        *,
        client_id: str,
        clean_session: bool,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._server = server
        self._client_id = client_id
        self._clean_session = clean_session
        self._credentials = (username, password)
        self._client = self._new_client()
        self._changed = threading.Condition()
        self._connect_result: ReasonCode | None = None
        self._suback: list[ReasonCode] | None = None
        self.session_present: bool | None = None
        self.payloads: list[bytes] = []

    def connect(self) -> None:
        """Connect and wait for a successful CONNACK."""
        result = self.try_connect()
        assert not result.is_failure, f"CONNACK {result}"

    def try_connect(self) -> ReasonCode:
        """Connect, wait for CONNACK and return its reason code, success or not."""
        self._connect_result = None
        self._client.connect(self._server.host, self._server.port, keepalive=30)
        self._client.loop_start()
        with self._changed:
            result = self._changed.wait_for(lambda: self._connect_result, TIMEOUT_S)
        assert result is not None, f"no CONNACK from {self._server} in {TIMEOUT_S} s"
        return result

    def reconnect(self) -> None:
        """Connect again under the same client id, as a restarted process would."""
        # A fresh paho client: one restarted with loop_start() after loop_stop() leaks its
        # wake-up socket pair (ResourceWarning).
        self._client = self._new_client()
        self.connect()

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1 and wait for SUBACK."""
        self._suback = None
        self._client.subscribe(topic, qos=1)
        with self._changed:
            codes = self._changed.wait_for(lambda: self._suback, TIMEOUT_S)
        assert codes is not None, f"no SUBACK for {topic} in {TIMEOUT_S} s"
        assert not any(code.is_failure for code in codes), f"SUBACK {codes}"

    def publish(self, topic: str, payloads: list[bytes], *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait until the broker acknowledged every message."""
        infos = [self._client.publish(topic, p, qos=1, retain=retain) for p in payloads]
        deadline = time.monotonic() + TIMEOUT_S
        for info in infos:
            info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
            assert info.is_published(), f"message {info.mid} not acknowledged in {TIMEOUT_S} s"

    def wait_for(self, payload: bytes) -> list[bytes]:
        """Wait until `payload` arrives; return everything received so far."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: payload in self.payloads, TIMEOUT_S)
            assert arrived, f"{payload!r} not received; got {len(self.payloads)} messages"
            return list(self.payloads)

    def disconnect(self) -> None:
        """Disconnect cleanly (a persistent session stays on the broker) and stop the loop."""
        self._client.disconnect()
        self._client.loop_stop()

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            clean_session=self._clean_session,
            protocol=mqtt.MQTTv311,
        )
        if self._credentials[0] is not None:
            client.username_pw_set(*self._credentials)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        with self._changed:
            self.session_present = flags.session_present
            self._connect_result = reason_code
            self._changed.notify_all()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Any,
    ) -> None:
        with self._changed:
            self._suback = reason_codes
            self._changed.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.payloads.append(bytes(message.payload))
            self._changed.notify_all()


def _probe(server: MosquittoServer, *, clean_session: bool = True, name: str = "") -> MqttProbe:
    """Return a connected probe with a unique client id (the session broker is shared)."""
    probe = MqttProbe(
        server, client_id=f"gw-test-{name}{uuid.uuid4().hex[:8]}", clean_session=clean_session
    )
    probe.connect()
    return probe


def _topic() -> str:
    """Return a telemetry topic of a sensor id unique to this test."""
    return f"gridwatch/s-{uuid.uuid4().hex[:12]}/telemetry"


def test_qos1_publish_reaches_subscriber(mosquitto: MosquittoServer) -> None:
    """A QoS 1 message published with paho reaches a subscriber on the session broker."""
    topic = _topic()
    subscriber = _probe(mosquitto)
    subscriber.subscribe(topic)
    publisher = _probe(mosquitto)
    publisher.publish(topic, [b'{"rain_mm": 0.2}'])
    assert subscriber.wait_for(b'{"rain_mm": 0.2}') == [b'{"rain_mm": 0.2}']
    publisher.disconnect()
    subscriber.disconnect()
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({}, 1500, id="shipped-config-keeps-all"),
        # Negative control: the Mosquitto default drops what an offline client has beyond 1000,
        # so the test above would catch a config that lost the raised limit.
        pytest.param({"max_queued_messages": "1000"}, 1000, id="mosquitto-default-drops"),
    ],
)
def test_offline_persistent_session_gets_backlog(
    tmp_path: Path, overrides: dict[str, str], expected: int
) -> None:
    """A persistent subscriber offline during 1,500 QoS 1 publishes receives the queue limit."""
    topic = _topic()
    with MosquittoServer(workdir=tmp_path, overrides=overrides) as broker:
        subscriber = _probe(broker, clean_session=False, name="sub-")
        subscriber.subscribe(topic)
        subscriber.disconnect()
        publisher = _probe(broker)
        backlog = [f'{{"seq": {i}}}'.encode() for i in range(1500)]
        publisher.publish(topic, backlog)

        subscriber.reconnect()
        # Mosquitto sends a client's queue in order, so once a message published after the
        # reconnect arrives, everything queued before it has arrived too.
        publisher.publish(topic, [b"sentinel"])
        received = subscriber.wait_for(b"sentinel")
        subscriber.disconnect()
        publisher.disconnect()

    assert subscriber.session_present is True
    assert received[-1] == b"sentinel"
    assert len(received) - 1 == expected
    # What survives is the oldest part of the backlog, each message once.
    assert received[:-1] == backlog[:expected]
    # Mosquitto logs the drop (once per client), the only trace a lost reading leaves.
    dropped = "Outgoing messages are being dropped" in broker.log_path.read_text()
    assert dropped is (expected < len(backlog))


def test_restart_keeps_sessions_queues_and_retained(fresh_mosquitto: MosquittoServer) -> None:
    """Queued messages of a persistent session and retained status survive restart()."""
    topic = _topic()
    status_topic = topic.replace("/telemetry", "/status")
    subscriber = _probe(fresh_mosquitto, clean_session=False, name="sub-")
    subscriber.subscribe(topic)
    subscriber.disconnect()
    publisher = _probe(fresh_mosquitto)
    queued = [f'{{"seq": {i}}}'.encode() for i in range(50)]
    publisher.publish(topic, queued)
    publisher.publish(status_topic, [b"online"], retain=True)
    publisher.disconnect()
    port = fresh_mosquitto.port

    fresh_mosquitto.restart()

    assert fresh_mosquitto.port == port
    subscriber.reconnect()
    publisher = _probe(fresh_mosquitto)
    publisher.publish(topic, [b"sentinel"])
    assert subscriber.wait_for(b"sentinel") == [*queued, b"sentinel"]
    assert subscriber.session_present is True
    watcher = _probe(fresh_mosquitto)
    watcher.subscribe(status_topic)
    assert watcher.wait_for(b"online") == [b"online"]
    for client in (subscriber, publisher, watcher):
        client.disconnect()
    assert "Saving in-memory database" in fresh_mosquitto.log_path.read_text()


def test_restart_without_persistence_loses_session(tmp_path: Path) -> None:
    """Negative control: with persistence off, the same restart forgets session and queue."""
    topic = _topic()
    with MosquittoServer(workdir=tmp_path, overrides={"persistence": "false"}) as broker:
        subscriber = _probe(broker, clean_session=False, name="sub-")
        subscriber.subscribe(topic)
        subscriber.disconnect()
        publisher = _probe(broker)
        publisher.publish(topic, [b"lost"])
        publisher.disconnect()
        broker.restart()
        subscriber.reconnect()
        subscriber.disconnect()
    assert subscriber.session_present is False
    assert subscriber.payloads == []


# The ACL deploy/mosquitto/README.md documents: a device (username = sensor id) may publish only
# under its own topics; the gateway reads everything.
ACL = """\
pattern write gridwatch/%u/#
user gridwatch-gateway
topic read gridwatch/#
"""


def test_password_and_acl_confine_devices_to_their_topics(tmp_path: Path) -> None:
    """With password and ACL files, only known users connect and a device publishes as itself."""
    passwd, acl = tmp_path / "gridwatch.passwd", tmp_path / "gridwatch.acl"
    passwd.touch()
    for user, password in [("s-1", "device-pw"), ("gridwatch-gateway", "gateway-pw")]:
        # -b: batch mode, the password comes from the command line; the file stores a hash.
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    acl.write_text(ACL)

    with MosquittoServer(workdir=tmp_path / "broker", password_file=passwd, acl_file=acl) as broker:
        gateway = MqttProbe(
            broker,
            client_id="gateway",
            clean_session=True,
            username="gridwatch-gateway",
            password="gateway-pw",
        )
        gateway.connect()
        gateway.subscribe("gridwatch/#")
        device = MqttProbe(
            broker, client_id="s-1", clean_session=True, username="s-1", password="device-pw"
        )
        device.connect()
        device.publish("gridwatch/s-1/telemetry", [b"own"])
        # MQTT 3.1.1 has no way to refuse a PUBLISH: the broker acknowledges and drops it.
        device.publish("gridwatch/s-2/telemetry", [b"impersonated"])
        device.publish("gridwatch/s-1/status", [b"sentinel"])
        received = gateway.wait_for(b"sentinel")
        anonymous = MqttProbe(broker, client_id="anon", clean_session=True)
        wrong = MqttProbe(
            broker, client_id="s-1-bad", clean_session=True, username="s-1", password="guess"
        )
        refusals = [anonymous.try_connect(), wrong.try_connect()]
        for client in (gateway, device, anonymous, wrong):
            client.disconnect()

    assert received == [b"own", b"sentinel"]
    assert [code.is_failure for code in refusals] == [True, True]


def test_start_moves_off_a_port_taken_meanwhile(tmp_path: Path) -> None:
    """If another process binds the picked port before the broker does, start() picks anew."""
    server = MosquittoServer(workdir=tmp_path)
    taken = server.port
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, taken))
        squatter.listen()
        with server:
            assert server.port != taken
            probe = _probe(server)
            probe.disconnect()
    assert "Address already in use" in server.log_path.read_text()


def test_broken_config_fails_start_with_log(tmp_path: Path) -> None:
    """A broker that cannot start raises at once with its log, instead of hanging the test."""
    # A misspelt option is an error for Mosquitto 2 (a bad number is not: it reads as 0).
    server = MosquittoServer(workdir=tmp_path, overrides={"max_queued_mesages": "5000"})
    try:
        with pytest.raises(MosquittoStartError, match="exited with code") as caught:
            server.start()
    finally:
        server.stop()
    assert "max_queued_mesages" in caught.value.log_tail
    assert not server.is_running


EVENT = {
    "specversion": "1.0",
    "id": "evt-1",
    "type": "gridwatch.case.opened",
    "source": "/gridwatch",
    "subject": "case-1",
    "data": {"id": "case-1", "sequence": 1},
}
BODY = json.dumps(EVENT).encode()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda: BODY, id="content-length"),
        # An iterator makes httpx send Transfer-Encoding: chunked.
        pytest.param(lambda: iter([BODY[:20], BODY[20:]]), id="chunked"),
    ],
)
def test_webhook_receiver_accepts_signed_delivery(
    webhook_receiver: WebhookReceiver,
    webhook_secret: str,
    content: Callable[[], bytes | Iterator[bytes]],
) -> None:
    """A request signed per Standard Webhooks is answered 200 and recorded with its JSON."""
    headers = signed_headers(webhook_secret, BODY, msg_id="evt-1")
    response = httpx.post(
        webhook_receiver.url, content=content(), headers=headers, timeout=TIMEOUT_S
    )

    assert response.status_code == 200
    [delivery] = webhook_receiver.wait_for(1)
    assert delivery.json == EVENT
    assert delivery.body == BODY
    assert delivery.event_id == "evt-1"
    assert delivery.path == "/webhook"
    assert delivery.headers["content-type"] == "application/cloudevents+json"
    assert webhook_receiver.rejected == []
    assert webhook_secret.startswith("whsec_")


def _tampered(secret: str) -> tuple[bytes, dict[str, str]]:
    return BODY.replace(b"case-1", b"case-2"), signed_headers(secret, BODY, msg_id="evt-1")


def _wrong_secret(secret: str) -> tuple[bytes, dict[str, str]]:
    return BODY, signed_headers(new_secret(), BODY, msg_id="evt-1")


def _unsigned(secret: str) -> tuple[bytes, dict[str, str]]:
    return BODY, {"content-type": "application/cloudevents+json"}


def _stale(secret: str) -> tuple[bytes, dict[str, str]]:
    # Standard Webhooks receivers refuse timestamps more than 5 minutes off (replay defence).
    stale = datetime.now(UTC) - timedelta(minutes=10)
    return BODY, signed_headers(secret, BODY, msg_id="evt-1", timestamp=stale)


def _malformed_signature(secret: str) -> tuple[bytes, dict[str, str]]:
    headers = signed_headers(secret, BODY, msg_id="evt-1")
    return BODY, {**headers, "webhook-signature": "v1-no-comma"}


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(_tampered, id="tampered-body"),
        pytest.param(_wrong_secret, id="wrong-secret"),
        pytest.param(_unsigned, id="missing-headers"),
        pytest.param(_stale, id="stale-timestamp"),
        pytest.param(_malformed_signature, id="malformed-signature"),
    ],
)
def test_webhook_receiver_rejects_bad_signatures(
    webhook_receiver: WebhookReceiver,
    webhook_secret: str,
    forge: Callable[[str], tuple[bytes, dict[str, str]]],
) -> None:
    """A delivery whose signature does not verify is answered 401 and kept apart."""
    webhook_receiver.respond_with(503)  # must stay queued: rejections do not use statuses
    body, headers = forge(webhook_secret)
    response = httpx.post(webhook_receiver.url, content=body, headers=headers, timeout=TIMEOUT_S)

    assert response.status_code == 401
    [rejected] = webhook_receiver.rejected
    assert rejected.status == 401
    assert rejected.error is not None
    assert rejected.error.startswith("signature:")
    assert webhook_receiver.received == []
    assert webhook_receiver.attempts == [rejected]
    good = signed_headers(webhook_secret, BODY, msg_id="evt-1")
    assert httpx.post(webhook_receiver.url, content=BODY, headers=good).status_code == 503


def test_webhook_receiver_serves_queued_statuses_in_order(
    webhook_receiver: WebhookReceiver, webhook_secret: str
) -> None:
    """Queued statuses and Retry-After answer the next deliveries, then the default applies."""
    webhook_receiver.respond_with(503, 503, retry_after=7)
    webhook_receiver.respond_with(429, retry_after="Wed, 21 Oct 2037 07:28:00 GMT")
    headers = signed_headers(webhook_secret, BODY, msg_id="evt-1")

    with httpx.Client(timeout=TIMEOUT_S) as client:
        answers = [client.post(webhook_receiver.url, content=BODY, headers=headers) for _ in "1234"]
        webhook_receiver.set_default_status(410)
        gone = client.post(webhook_receiver.url, content=BODY, headers=headers)

    assert [(r.status_code, r.headers.get("retry-after")) for r in answers] == [
        (503, "7"),
        (503, "7"),
        (429, "Wed, 21 Oct 2037 07:28:00 GMT"),
        (200, None),
    ]
    assert gone.status_code == 410
    assert [d.status for d in webhook_receiver.attempts] == [503, 503, 429, 200, 410]
    assert [d.status for d in webhook_receiver.received] == [200]


def test_webhook_receiver_wait_for_times_out_with_what_came(
    webhook_receiver: WebhookReceiver, webhook_secret: str
) -> None:
    """wait_for gives up after its timeout and says which attempts it saw."""
    webhook_receiver.respond_with(500)
    headers = signed_headers(webhook_secret, BODY, msg_id="evt-1")
    httpx.post(webhook_receiver.url, content=BODY, headers=headers, timeout=TIMEOUT_S)

    with pytest.raises(TimeoutError, match=r"0 of 1 .* attempts: \[500\]"):
        webhook_receiver.wait_for(1, timeout=0.2)


async def test_webhook_receiver_wait_for_async_lets_sender_run(
    webhook_receiver: WebhookReceiver, webhook_secret: str
) -> None:
    """wait_for_async leaves the event loop free for a sender on the same loop."""
    headers = signed_headers(webhook_secret, BODY, msg_id="evt-1")
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client, asyncio.TaskGroup() as tasks:
        sender = tasks.create_task(
            client.post(webhook_receiver.url, content=BODY, headers=headers), name="sender"
        )
        [delivery] = await webhook_receiver.wait_for_async(1)
    assert sender.result().status_code == 200
    assert delivery.event_id == "evt-1"


async def test_postgres_url_is_a_fresh_usable_database(
    postgres_database: ScratchDatabase, postgres_url: str
) -> None:
    """postgres_url names an empty database of its own that SQLAlchemy async can use."""
    engine = create_async_engine(postgres_url)
    try:
        async with engine.begin() as conn:
            name = await conn.scalar(text("SELECT current_database()"))
            tables = await conn.scalar(
                text("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'")
            )
            await conn.execute(text("CREATE TABLE probe (id int PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO probe VALUES (1)"))
            rows = await conn.scalar(text("SELECT count(*) FROM probe"))
    finally:
        await engine.dispose()
    assert postgres_url.startswith("postgresql+asyncpg://")
    assert name == postgres_database.name
    assert name.startswith("gw_test_")
    assert (tables, rows) == (0, 1)


async def test_scratch_database_is_dropped_even_with_open_connections(
    postgres_database: ScratchDatabase,
) -> None:
    """The database is dropped on exit, even while a test still holds a connection to it."""
    async with scratch_database() as database:
        leftover = await asyncpg.connect(database.dsn)  # a test that forgot to close
        assert await database_exists(database.name)
    assert not await database_exists(database.name)
    assert not await _alive(leftover)
    leftover.terminate()
    assert database.name != postgres_database.name


async def _alive(conn: asyncpg.Connection) -> bool:
    """Tell whether `conn` still answers a query."""
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return False
    return True


async def test_unreachable_postgres_fails_clearly() -> None:
    """A server that is not there gives an error naming the URL and the setting to fix."""
    admin = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(PostgresUnavailableError, match="GRIDWATCH_TEST_PG_ADMIN_URL") as caught:
        async with scratch_database(admin):
            pass
    assert admin in str(caught.value)
