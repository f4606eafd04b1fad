"""The public API: construction, binding, shutdown that leaves nothing behind, and the CLI."""

import asyncio
import os
import re
import signal
import subprocess
import sys

import pytest

import gridwatch.broker
from gridwatch.broker import BrokerStats, EmbeddedBroker
from gridwatch.broker._packets import PingReq, PingResp
from tests.broker.clients import TIMEOUT, RawClient, aiomqtt_client, collect


def test_public_api_is_explicit():
    # The broker, and the packet codec the gateway's subscriber encodes its packets with.
    assert sorted(gridwatch.broker.__all__) == [
        "BrokerStats", "Connect", "Disconnect", "EmbeddedBroker", "PingReq", "Subscribe",
        "encode_packet",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"port": -1}, "port"),
        ({"port": 65_536}, "port"),
        ({"max_queued_messages": 0}, "max_queued_messages"),
        ({"host": ""}, "host"),
    ],
)
def test_invalid_arguments_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        EmbeddedBroker(**options)


def test_port_zero_is_unknown_until_started():
    broker = EmbeddedBroker()
    with pytest.raises(RuntimeError, match="started"):
        _ = broker.port


@pytest.mark.parametrize(("host", "url_host"), [("127.0.0.1", "127.0.0.1"), ("::1", "[::1]")])
def test_url_names_host_and_port(host, url_host):
    assert EmbeddedBroker(host=host, port=1883).url == f"mqtt://{url_host}:1883"


async def test_binds_a_free_port_and_reports_it():
    async with EmbeddedBroker() as broker:
        assert broker.port > 0
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        assert broker.stats == BrokerStats(0, 0, 0, 0, 0, 0)
        async with await RawClient.open(broker.port) as raw:
            await raw.connect("probe")
            await raw.send(PingReq())
            assert await raw.receive() == PingResp()


async def test_a_broker_starts_only_once():
    broker = EmbeddedBroker()
    async with broker:
        pass
    with pytest.raises(RuntimeError, match="only be started once"):
        await broker.__aenter__()


async def test_a_port_in_use_fails_on_enter_and_leaves_no_task():
    async with EmbeddedBroker() as first:
        clash = EmbeddedBroker(port=first.port)
        with pytest.raises(OSError, match="address already in use"):
            await clash.__aenter__()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_an_error_in_the_body_propagates_unwrapped():
    with pytest.raises(KeyError):
        async with EmbeddedBroker():
            raise KeyError("mine")


async def test_exit_closes_every_connection_and_awaits_every_task():
    broker = EmbeddedBroker()
    async with broker:
        raw = await RawClient.open(broker.port)
        await raw.connect("left-open")
        idle = await RawClient.open(broker.port)
        async with aiomqtt_client(broker.port) as sub:
            await sub.subscribe("x", qos=1)
            await sub.publish("x", b"", qos=1)
            await collect(sub, 1)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert await raw.read_until_closed() == b""
    assert await idle.read_until_closed() == b""
    await raw.close()
    await idle.close()
    with pytest.raises(ConnectionRefusedError):
        await RawClient.open(broker.port)


async def _listening_port(stderr: asyncio.StreamReader) -> int:
    async with asyncio.timeout(10):
        while line := await stderr.readline():
            if match := re.search(rb"listening url=mqtt://127\.0\.0\.1:(\d+)", line):
                return int(match.group(1))
    raise AssertionError("the broker exited before listening")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
async def test_command_line_serves_until_interrupted(stop_signal):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gridwatch.broker",
        "--port",
        "0",
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    try:
        port = await _listening_port(process.stderr)
        async with aiomqtt_client(port) as client:
            await client.subscribe("cli", qos=1)
            await client.publish("cli", b"ok", qos=1)
            [message] = await collect(client, 1)
        assert message.payload == b"ok"
        process.send_signal(stop_signal)
        async with asyncio.timeout(TIMEOUT):
            rest = await process.stderr.read()
            assert await process.wait() == 0
        assert b"embedded broker stopped" in rest
        assert b"Traceback" not in rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
