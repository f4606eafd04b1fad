"""Sessions over real sockets: wills, keepalive, persistence, resend, takeover and drops."""

import asyncio
import socket

import pytest

from gridwatch.broker import EmbeddedBroker
from gridwatch.broker._packets import (
    ConnAck,
    Disconnect,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Will,
)
from tests.broker.clients import (
    TIMEOUT,
    OpenRaw,
    PahoClient,
    RawClient,
    aiomqtt_client,
    collect,
    wait_until,
)

STATUS = "gridwatch/dev-1/status"
OFFLINE_WILL = Will(STATUS, b"offline", qos=1, retain=True)


async def test_will_is_published_when_the_socket_drops(broker: EmbeddedBroker, open_raw: OpenRaw):
    async with aiomqtt_client(broker.port) as watcher:
        await watcher.subscribe("gridwatch/+/status", qos=1)
        device = await open_raw()
        await device.connect("dev-1", will=OFFLINE_WILL)
        device.abort()
        [will] = await collect(watcher, 1)
    assert (will.topic.value, will.payload, will.qos) == (STATUS, b"offline", 1)
    async with aiomqtt_client(broker.port) as late:
        await late.subscribe(STATUS, qos=1)
        [retained] = await collect(late, 1)
    assert (retained.payload, retained.retain) == (b"offline", True)


async def test_paho_device_status_and_will_follow_the_gridwatch_contract(broker: EmbeddedBroker):
    async with aiomqtt_client(broker.port) as watcher:
        await watcher.subscribe(STATUS, qos=1)
        device = PahoClient(broker.port, client_id="dev-1", will=(STATUS, b"offline", 1, True))
        async with device:
            await device.publish(STATUS, b"online", qos=1, retain=True)
            [online] = await collect(watcher, 1)
            # Simulate a crash: end paho's connection behind its back, without DISCONNECT.
            sock = device.client.socket()
            assert isinstance(sock, socket.socket)
            sock.shutdown(socket.SHUT_RDWR)
            [offline] = await collect(watcher, 1)
    assert (online.payload, offline.payload) == (b"online", b"offline")


async def test_disconnect_discards_the_will(broker: EmbeddedBroker, open_raw: OpenRaw):
    async with aiomqtt_client(broker.port) as watcher:
        await watcher.subscribe("gridwatch/#", qos=1)
        device = await open_raw()
        await device.connect("dev-1", will=OFFLINE_WILL)
        await device.send(Disconnect())
        assert await device.read_until_closed() == b""
        async with aiomqtt_client(broker.port) as other:
            await other.publish("gridwatch/marker", b"", qos=1)
        [first] = await collect(watcher, 1)
    assert first.topic.value == "gridwatch/marker"


async def test_keepalive_timeout_closes_and_publishes_the_will(
    broker: EmbeddedBroker, open_raw: OpenRaw
):
    async with aiomqtt_client(broker.port) as watcher:
        await watcher.subscribe(STATUS, qos=1)
        device = await open_raw()
        await device.connect("dev-1", keepalive=1, will=OFFLINE_WILL)
        await device.send(PingReq())
        assert await device.receive() == PingResp()
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await device.read_until_closed() == b""
        silent_for = loop.time() - started
        [will] = await collect(watcher, 1)
    assert 1.2 < silent_for < TIMEOUT
    assert will.payload == b"offline"


async def test_persistent_session_gets_what_was_queued_while_offline(broker: EmbeddedBroker):
    gateway = {"identifier": "gateway", "clean_session": False}
    async with aiomqtt_client(broker.port, **gateway) as sub:
        await sub.subscribe("gridwatch/+/telemetry", qos=1)
    await wait_until(lambda: broker.stats.connected_clients == 0)
    async with aiomqtt_client(broker.port) as pub:
        for index in range(10):
            await pub.publish("gridwatch/dev-1/telemetry", b"%d" % index, qos=1)
        await pub.publish("gridwatch/dev-1/telemetry", b"qos0 is not queued", qos=0)
        async with aiomqtt_client(broker.port, **gateway) as sub:
            messages = await collect(sub, 10)
            await pub.publish("gridwatch/dev-1/telemetry", b"marker", qos=1)
            [marker] = await collect(sub, 1)
    assert [m.payload for m in messages] == [b"%d" % i for i in range(10)]
    assert marker.payload == b"marker"


async def test_session_present_flag_follows_clean_session(open_raw: OpenRaw):
    results = []
    for clean in [False, False, True, False]:
        client = await open_raw()
        results.append((await client.connect("gw", clean_session=clean)).session_present)
        await client.send(Disconnect())
        await client.read_until_closed()
    assert results == [False, True, False, False]


async def test_unacknowledged_messages_are_resent_with_dup_on_reconnect(
    broker: EmbeddedBroker, open_raw: OpenRaw
):
    first = await open_raw()
    await first.connect("gw", clean_session=False)
    await first.send(Subscribe(1, (("t/#", 2),)))
    assert await first.receive() == SubAck(1, (2,))
    async with aiomqtt_client(broker.port) as pub:
        await pub.publish("t/1", b"one", qos=1)
        await pub.publish("t/2", b"two", qos=2)
    sent = [await first.receive(), await first.receive()]
    assert [(p.packet_id, p.dup) for p in sent if isinstance(p, Publish)] == [
        (1, False),
        (2, False),
    ]
    await first.send(PubRec(2))
    assert await first.receive() == PubRel(2)
    first.abort()

    second = await open_raw()
    assert await second.connect("gw", clean_session=False) == ConnAck(True, 0)
    resent = [await second.receive(), await second.receive()]
    assert resent == [Publish("t/1", b"one", qos=1, dup=True, packet_id=1), PubRel(2)]
    await second.send(PubAck(1))


@pytest.mark.parametrize(
    ("old_clean", "new_clean", "first_seen"),
    [
        (True, True, b"offline"),
        (True, False, b"offline"),
        (False, True, b"offline"),
        # Like Mosquitto: a persistent client reconnecting over its old connection keeps quiet.
        (False, False, b"marker"),
    ],
)
async def test_a_new_connection_takes_over_the_client_id(
    broker: EmbeddedBroker, open_raw: OpenRaw, old_clean, new_clean, first_seen
):
    async with aiomqtt_client(broker.port) as watcher:
        await watcher.subscribe(STATUS, qos=1)
        old = await open_raw()
        await old.connect("dev-1", clean_session=old_clean, will=OFFLINE_WILL)
        new = await open_raw()
        connack = await new.connect("dev-1", clean_session=new_clean)
        assert await old.read_until_closed() == b""
        await new.send(Publish(STATUS, b"marker", qos=1, packet_id=1))
        assert await new.receive() == PubAck(1)
        [first] = await collect(watcher, 1)
    assert connack == ConnAck(not (old_clean or new_clean), 0)
    assert first.payload == first_seen
    assert broker.stats.connected_clients == 2


async def test_takeover_of_a_persistent_session_keeps_its_subscriptions(
    broker: EmbeddedBroker, open_raw: OpenRaw
):
    old = await open_raw()
    await old.connect("gw", clean_session=False)
    await old.send(Subscribe(1, (("k/#", 1),)))
    assert await old.receive() == SubAck(1, (1,))
    new = await open_raw()
    assert await new.connect("gw", clean_session=False) == ConnAck(True, 0)
    async with aiomqtt_client(broker.port) as pub:
        await pub.publish("k/x", b"kept", qos=1)
    received = await new.receive()
    assert isinstance(received, Publish)
    assert received.payload == b"kept"


@pytest.mark.parametrize("max_queued", [1, 3])
async def test_queue_overflow_drops_and_counts(max_queued, caplog):
    async with EmbeddedBroker(max_queued_messages=max_queued) as broker:
        gateway = {"identifier": "gateway", "clean_session": False}
        async with aiomqtt_client(broker.port, **gateway) as sub:
            await sub.subscribe("d/#", qos=1)
        await wait_until(lambda: broker.stats.connected_clients == 0)
        async with aiomqtt_client(broker.port) as pub:
            for index in range(8):
                await pub.publish("d/x", b"%d" % index, qos=1)
        assert broker.stats.messages_dropped == 8 - max_queued
        async with aiomqtt_client(broker.port, **gateway) as sub:
            received = await collect(sub, max_queued)
            async with aiomqtt_client(broker.port) as pub:
                await pub.publish("d/marker", b"", qos=1)
            [marker] = await collect(sub, 1)
    assert [m.payload for m in received] == [b"%d" % i for i in range(max_queued)]
    assert marker.topic.value == "d/marker"
    warnings = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1
    assert "client_id=gateway" in warnings[0]


async def test_raw_client_connect_after_restart_has_no_session():
    for _ in range(2):
        async with EmbeddedBroker() as broker, await RawClient.open(broker.port) as client:
            connack = await client.connect("gw", clean_session=False)
            assert connack == ConnAck(False, 0)
