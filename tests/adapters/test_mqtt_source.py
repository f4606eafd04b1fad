"""The MQTT source against a real Mosquitto: batches, acks after durability, reconnects."""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence

from gridwatch.adapters import mqtt as mqtt_module
from gridwatch.adapters.mqtt import MqttSource, RawMessage
from gridwatch.gateway.files import write_file_atomically
from gridwatch.registry.mqtt_acl import render_password_file
from tests.e2e.publish import publish_all
from tests.servers.mosquitto import MosquittoServer

WAIT_S = 15.0


class Consumer:
    """A handler that records batches and makes them durable only when told to."""

    def __init__(self, *, durable: bool = True) -> None:
        self.messages: list[RawMessage] = []
        self.batches = 0
        self.durable = durable
        self.pending: list[asyncio.Future[None]] = []
        self.connections: list[bool] = []

    async def __call__(self, messages: Sequence[RawMessage]) -> asyncio.Future[None]:
        self.messages.extend(messages)
        self.batches += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.durable:
            done.set_result(None)
        else:
            self.pending.append(done)
        return done

    def payloads(self) -> list[bytes]:
        return [message.payload for message in self.messages]


@contextlib.asynccontextmanager
async def running(
    broker: MosquittoServer, consumer: Consumer, *, client_id: str, prefix: str, url: str = ""
) -> AsyncIterator[MqttSource]:
    source = MqttSource(
        url=url or broker.url,
        topic_prefix=prefix,
        client_id=client_id,
        handler=consumer,
        on_connection=consumer.connections.append,
    )
    task = asyncio.create_task(source.run())
    try:
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(predicate, *, what: str) -> None:
    for _ in range(int(WAIT_S / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def ids() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"src-{tag}", f"gw-{tag}"


def publish(broker: MosquittoServer, prefix: str, count: int, start: int = 0) -> list[bytes]:
    payloads = [f'{{"n": {i}}}'.encode() for i in range(start, start + count)]
    publish_all(broker.host, broker.port, [(f"{prefix}/S1/telemetry", p) for p in payloads])
    return payloads


async def test_a_batch_is_acknowledged_only_once_it_is_durable(mosquitto):
    prefix, client_id = ids()
    # Create the session, so messages published before the first consumer reads are kept.
    async with running(mosquitto, Consumer(), client_id=client_id, prefix=prefix) as _:
        await asyncio.sleep(0.5)
    sent = await asyncio.to_thread(publish, mosquitto, prefix, 20)

    holding = Consumer(durable=False)
    async with running(mosquitto, holding, client_id=client_id, prefix=prefix):
        await wait_for(lambda: len(holding.messages) == 20, what="20 messages")
    assert holding.payloads() == sent

    # Never made durable, so never acknowledged: the broker gives them to the next connection.
    again = Consumer()
    async with running(mosquitto, again, client_id=client_id, prefix=prefix):
        await wait_for(lambda: len(again.messages) == 20, what="the 20 again")
        await asyncio.sleep(0.5)
    assert again.payloads() == sent

    after = Consumer()
    async with running(mosquitto, after, client_id=client_id, prefix=prefix):
        await asyncio.sleep(1.0)
    assert after.messages == []


async def test_the_session_survives_a_broker_restart(fresh_mosquitto):
    prefix, client_id = ids()
    consumer = Consumer()
    async with running(fresh_mosquitto, consumer, client_id=client_id, prefix=prefix):
        await wait_for(lambda: consumer.connections == [True], what="connected")
        first = await asyncio.to_thread(publish, fresh_mosquitto, prefix, 5)
        await wait_for(lambda: len(consumer.messages) == 5, what="5 messages")
        await asyncio.to_thread(fresh_mosquitto.restart)
        await wait_for(
            lambda: len(consumer.connections) > 1 and consumer.connections[-1],
            what="reconnected",
        )
        second = await asyncio.to_thread(publish, fresh_mosquitto, prefix, 5, 5)
        await wait_for(lambda: len(consumer.messages) == 10, what="5 more")
    assert False in consumer.connections
    assert consumer.payloads() == first + second


async def test_a_flood_past_the_inbox_pauses_reading_and_loses_nothing(mosquitto, monkeypatch):
    monkeypatch.setattr(mqtt_module, "MAX_INBOX", 50)
    monkeypatch.setattr(mqtt_module, "MAX_BATCH", 10)
    prefix, client_id = ids()
    consumer = Consumer()

    async def slow(messages: Sequence[RawMessage]) -> asyncio.Future[None]:
        await asyncio.sleep(0.002)
        return await consumer(messages)

    source = MqttSource(url=mosquitto.url, topic_prefix=prefix, client_id=client_id, handler=slow)
    task = asyncio.create_task(source.run())
    try:
        await asyncio.sleep(0.5)
        sent = await asyncio.to_thread(publish, mosquitto, prefix, 1_000)
        await wait_for(lambda: len(consumer.messages) >= 1_000, what="1,000 messages")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert consumer.payloads() == sent
    assert consumer.batches >= 100


async def test_a_wrong_password_is_logged_and_retried(tmp_path, caplog):
    password_file = tmp_path / "passwd"
    write_file_atomically(password_file, render_password_file({"gateway": "right"}))
    with MosquittoServer(workdir=tmp_path / "broker", password_file=password_file) as broker:
        prefix, client_id = ids()
        consumer = Consumer()
        url = f"mqtt://gateway:wrong@{broker.host}:{broker.port}"
        with caplog.at_level(logging.WARNING, logger="gridwatch.mqtt"):
            async with running(broker, consumer, client_id=client_id, prefix=prefix, url=url):
                await wait_for(lambda: "not authorised" in caplog.text, what="the refusal")
        assert True not in consumer.connections
        assert "reconnecting in" in caplog.text
