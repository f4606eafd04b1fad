"""Bad peers: each one loses only its own connection, with a warning naming it."""

import logging

import pytest

from gridwatch.broker import EmbeddedBroker
from gridwatch.broker import _connection as connection_module
from gridwatch.broker._codec import encode
from gridwatch.broker._packets import (
    ConnAck,
    Connect,
    PingReq,
    PingResp,
    Publish,
    SubAck,
    Subscribe,
)
from tests.broker.clients import OpenRaw, aiomqtt_client, collect


async def _assert_broker_still_serves(broker: EmbeddedBroker) -> None:
    async with aiomqtt_client(broker.port) as sub, aiomqtt_client(broker.port) as pub:
        await sub.subscribe("alive", qos=1)
        await pub.publish("alive", b"yes", qos=1)
        [message] = await collect(sub, 1)
    assert message.payload == b"yes"


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00",
        b"\xf0\x00",
        b"\x36\x04\x00\x01a\x00",
        b"\x30\x03\x00\x02\xc3\x28",
        b"\x82\x05\x00\x01\x00\x01a",
        b"\x82\x02\x00\x01",
        b"\x30\xff\xff\xff\xff\x7f",
        b"\xc0\x01\x00",
        encode(Publish("a/+", b"wildcards are for filters")),
        encode(Connect("again")),
        encode(SubAck(1, (0,))),
        encode(ConnAck(False, 0)),
    ],
    ids=repr,
)
async def test_malformed_packet_closes_only_that_connection(
    broker: EmbeddedBroker, open_raw: OpenRaw, caplog, garbage
):
    bystander = await open_raw()
    await bystander.connect("bystander")
    culprit = await open_raw()
    await culprit.connect("culprit")
    with caplog.at_level(logging.WARNING, logger="gridwatch.broker"):
        await culprit.send_bytes(garbage)
        assert await culprit.read_until_closed() == b""
    await bystander.send(PingReq())
    assert await bystander.receive() == PingResp()
    await _assert_broker_still_serves(broker)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("client_id=culprit" in w and "closing connection" in w for w in warnings)


@pytest.mark.parametrize(
    "first_bytes",
    [
        b"\xc0\x00",
        b"\x10\x00",
        b"\x10\x0d\x00\x04MQTT\x04\x03\x00\x0a\x00\x01c",
        b"GET / HTTP/1.1\r\n\r\n",
    ],
    ids=["pingreq-first", "empty-connect", "reserved-flag", "http"],
)
async def test_bad_first_packet_is_closed_without_connack(
    broker: EmbeddedBroker, open_raw: OpenRaw, first_bytes
):
    raw = await open_raw()
    await raw.send_bytes(first_bytes)
    assert await raw.read_until_closed() == b""
    await _assert_broker_still_serves(broker)


@pytest.mark.parametrize(
    "connect",
    [
        b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x0a\x00\x01c",
        b"\x10\x0f\x00\x06MQIsdp\x03\x02\x00\x0a\x00\x01c",
    ],
    ids=["mqtt5", "mqtt31"],
)
async def test_other_protocol_levels_get_return_code_1_then_close(
    open_raw: OpenRaw, connect: bytes
):
    raw = await open_raw()
    await raw.send_bytes(connect)
    assert await raw.read_until_closed() == encode(ConnAck(False, 1))


async def test_empty_client_id_needs_clean_session(open_raw: OpenRaw):
    raw = await open_raw()
    await raw.send(Connect("", clean_session=False))
    assert await raw.read_until_closed() == encode(ConnAck(False, 2))


async def test_empty_client_id_with_clean_session_gets_one_assigned(
    broker: EmbeddedBroker, open_raw: OpenRaw, caplog
):
    raw = await open_raw()
    with caplog.at_level(logging.INFO, logger="gridwatch.broker"):
        assert await raw.connect("") == ConnAck(False, 0)
    assert any("client_id=auto-" in r.getMessage() for r in caplog.records)
    assert broker.stats.connected_clients == 1


async def test_a_client_that_never_sends_connect_is_closed(
    open_raw: OpenRaw, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(connection_module, "CONNECT_TIMEOUT", 0.2)
    raw = await open_raw()
    assert await raw.read_until_closed() == b""


async def test_an_internal_error_in_one_connection_spares_the_others(
    broker: EmbeddedBroker, open_raw: OpenRaw, monkeypatch: pytest.MonkeyPatch, caplog
):
    original = connection_module.Connection._on_subscribe

    def explode(self: connection_module.Connection, session, packet: Subscribe) -> None:
        if self.client_id == "unlucky":
            raise RuntimeError("simulated bug")
        original(self, session, packet)

    monkeypatch.setattr(connection_module.Connection, "_on_subscribe", explode)
    raw = await open_raw()
    await raw.connect("unlucky")
    await raw.send(Subscribe(1, (("x", 0),)))
    assert await raw.read_until_closed() == b""
    await _assert_broker_still_serves(broker)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["connection failed client_id=unlucky"]
