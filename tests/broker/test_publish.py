"""Publish and subscribe through real clients over loopback sockets."""

import asyncio

import pytest

from gridwatch.broker import EmbeddedBroker
from gridwatch.broker._packets import (
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from tests.broker.clients import OpenRaw, PahoClient, aiomqtt_client, collect


@pytest.mark.parametrize("sub_qos", [0, 1, 2])
@pytest.mark.parametrize("pub_qos", [0, 1, 2])
async def test_qos_round_trip_delivers_at_the_lower_qos(broker: EmbeddedBroker, pub_qos, sub_qos):
    async with aiomqtt_client(broker.port) as sub, aiomqtt_client(broker.port) as pub:
        await sub.subscribe("q/t", qos=sub_qos)
        await pub.publish("q/t", b"hello", qos=pub_qos)
        [message] = await collect(sub, 1)
    assert (message.payload, message.qos, message.retain) == (
        b"hello",
        min(pub_qos, sub_qos),
        False,
    )


async def test_paho_device_and_aiomqtt_gateway_exchange_qos1(broker: EmbeddedBroker):
    async with (
        aiomqtt_client(broker.port, identifier="gateway", clean_session=False) as gateway,
        PahoClient(broker.port, client_id="dev-1") as device,
    ):
        await gateway.subscribe("gridwatch/+/telemetry", qos=1)
        for index in range(20):
            await device.publish("gridwatch/dev-1/telemetry", b"%d" % index, qos=1)
        messages = await collect(gateway, 20)
    assert [m.payload for m in messages] == [b"%d" % i for i in range(20)]
    assert broker.stats.messages_received == 20


async def test_qos2_in_both_directions_with_paho(broker: EmbeddedBroker):
    async with PahoClient(broker.port) as sub, PahoClient(broker.port) as pub:
        [granted] = await sub.subscribe("q2/#", 2)
        await pub.publish("q2/x", b"exactly once", qos=2)
        message = await sub.next_message()
    assert (granted.value, message.payload, message.qos) == (2, b"exactly once", 2)


async def test_qos2_resent_before_pubrel_is_routed_once(broker: EmbeddedBroker, open_raw: OpenRaw):
    async with aiomqtt_client(broker.port) as sub:
        await sub.subscribe("dup/#", qos=2)
        raw = await open_raw()
        await raw.connect("raw-pub")
        first = Publish("dup/x", b"once", qos=2, packet_id=9)
        await raw.send(first)
        assert await raw.receive() == PubRec(9)
        await raw.send(Publish("dup/x", b"once", qos=2, dup=True, packet_id=9))
        assert await raw.receive() == PubRec(9)
        await raw.send(PubRel(9))
        assert await raw.receive() == PubComp(9)
        await raw.send(Publish("dup/marker", b"", qos=1, packet_id=10))
        assert await raw.receive() == PubAck(10)
        messages = await collect(sub, 2)
    assert [m.topic.value for m in messages] == ["dup/x", "dup/marker"]


async def test_broker_runs_the_qos2_flow_towards_a_subscriber(
    broker: EmbeddedBroker, open_raw: OpenRaw
):
    raw = await open_raw()
    await raw.connect("raw-sub")
    await raw.send(Subscribe(1, (("flow", 2),)))
    assert await raw.receive() == SubAck(1, (2,))
    async with aiomqtt_client(broker.port) as pub:
        await pub.publish("flow", b"x", qos=2)
    publish = await raw.receive()
    assert isinstance(publish, Publish)
    assert (publish.qos, publish.dup, publish.packet_id) == (2, False, 1)
    await raw.send(PubRec(1))
    assert await raw.receive() == PubRel(1)
    await raw.send(PubComp(1))


async def test_retained_message_reaches_late_subscribers_and_an_empty_one_clears_it(
    broker: EmbeddedBroker,
):
    async with PahoClient(broker.port) as device:
        await device.publish("gridwatch/dev-1/status", b"online", qos=1, retain=True)
        async with aiomqtt_client(broker.port) as late:
            await late.subscribe("gridwatch/+/status", qos=1)
            [retained] = await collect(late, 1)
            await device.publish("gridwatch/dev-1/status", b"", qos=1, retain=True)
            [cleared] = await collect(late, 1)
        assert broker.stats.retained_messages == 0
        async with aiomqtt_client(broker.port) as later:
            await later.subscribe("gridwatch/#", qos=1)
            await device.publish("gridwatch/marker", b"m", qos=1)
            [first] = await collect(later, 1)
    assert (retained.payload, retained.retain, retained.qos) == (b"online", True, 1)
    # A live subscriber gets the clearing message as a normal one.
    assert (cleared.payload, cleared.retain) == (b"", False)
    assert first.topic.value == "gridwatch/marker"


async def test_retained_qos_is_the_lower_of_stored_and_granted(broker: EmbeddedBroker):
    async with aiomqtt_client(broker.port) as pub:
        await pub.publish("r/q1", b"1", qos=1, retain=True)
        await pub.publish("r/q0", b"0", qos=0, retain=True)
        async with aiomqtt_client(broker.port) as sub:
            await sub.subscribe("r/#", qos=2)
            messages = await collect(sub, 2)
    assert sorted((m.topic.value, m.qos, m.retain) for m in messages) == [
        ("r/q0", 0, True),
        ("r/q1", 1, True),
    ]


async def test_wildcards_route_and_dollar_topics_stay_hidden(broker: EmbeddedBroker):
    async with aiomqtt_client(broker.port) as sub, aiomqtt_client(broker.port) as pub:
        await sub.subscribe([("gridwatch/+/event", 1), ("#", 0), ("$internal/#", 0)])
        for topic in ["gridwatch/cam-1/event", "$internal/x", "$hidden/y", "other/z"]:
            await pub.publish(topic, b"", qos=1)
        messages = await collect(sub, 3)
    assert [(m.topic.value, m.qos) for m in messages] == [
        ("gridwatch/cam-1/event", 1),
        ("$internal/x", 0),
        ("other/z", 0),
    ]


async def test_overlapping_subscriptions_deliver_once_at_the_highest_qos(broker: EmbeddedBroker):
    async with aiomqtt_client(broker.port) as sub, aiomqtt_client(broker.port) as pub:
        await sub.subscribe([("o/+", 0), ("o/#", 1), ("o/x", 0)])
        await pub.publish("o/x", b"1", qos=2)
        await pub.publish("o/marker", b"2", qos=1)
        messages = await collect(sub, 2)
    assert [(m.payload, m.qos) for m in messages] == [(b"1", 1), (b"2", 1)]


async def test_unsubscribe_stops_delivery(broker: EmbeddedBroker, open_raw: OpenRaw):
    raw = await open_raw()
    await raw.connect("unsub", keepalive=10)
    await raw.send(Subscribe(1, (("u/a", 0), ("u/b", 0))))
    assert await raw.receive() == SubAck(1, (0, 0))
    await raw.send(Unsubscribe(2, ("u/a", "never-subscribed")))
    assert await raw.receive() == UnsubAck(2)
    async with aiomqtt_client(broker.port) as pub:
        await pub.publish("u/a", b"", qos=1)
        await pub.publish("u/b", b"", qos=1)
    received = await raw.receive()
    assert isinstance(received, Publish)
    assert received.topic == "u/b"


async def test_invalid_filter_gets_0x80_and_the_valid_ones_are_granted(
    broker: EmbeddedBroker, open_raw: OpenRaw
):
    raw = await open_raw()
    await raw.connect("filters")
    await raw.send(Subscribe(3, (("ok/#", 1), ("bad/#/x", 1), ("a+", 0), ("q/+", 2))))
    assert await raw.receive() == SubAck(3, (1, 0x80, 0x80, 2))


async def test_credentials_are_accepted_and_ignored(open_raw: OpenRaw):
    raw = await open_raw()
    connack = await raw.connect("cred", username="anyone", password=b"anything")
    assert connack.return_code == 0


async def test_a_slow_subscriber_does_not_block_publishers(
    broker: EmbeddedBroker, open_raw: OpenRaw
):
    # 25 MiB: far more than the loopback socket buffers, so writes to the stalled client back up.
    count, big = 200, b"x" * 131_072
    stalled = await open_raw()
    await stalled.connect("stalled")
    await stalled.send(Subscribe(1, (("slow/#", 0),)))
    assert await stalled.receive() == SubAck(1, (0,))
    async with aiomqtt_client(broker.port) as fast, aiomqtt_client(broker.port) as pub:
        await fast.subscribe("slow/#", qos=0)
        async with asyncio.timeout(5):
            for _ in range(count):
                await pub.publish("slow/big", big, qos=1)
        messages = await collect(fast, count)
    assert len(messages) == count
