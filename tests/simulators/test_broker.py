"""Integration tests against a real Mosquitto: live runs, wills, retained statuses, replay."""

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from gridwatch.simulators import (
    RunStats,
    Scenario,
    iter_messages,
    load_recording,
    parse_mqtt_url,
    record,
    replay,
    run_scenario,
)
from gridwatch.simulators.__main__ import main

START = datetime(2025, 6, 1, 8, tzinfo=UTC)
SEED = 3
ALL_KINDS = Path(__file__).parent / "scenarios" / "all_kinds.yaml"


@contextlib.asynccontextmanager
async def subscriber(
    url: str, topic: str, *, retained: bool = True
) -> AsyncIterator[aiomqtt.Client]:
    """An MQTT 5 subscriber that sees retain flags as published; optionally no retained backlog."""
    broker = parse_mqtt_url(url)
    client = aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=f"test-sub-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
    )
    options = SubscribeOptions(qos=1, retainAsPublished=True, retainHandling=0 if retained else 2)
    async with client:
        await client.subscribe(topic, options=options)
        yield client


async def collect(
    client: aiomqtt.Client, count: int, timeout_s: float = 10.0
) -> list[aiomqtt.Message]:
    """Up to `count` messages, waiting at most `timeout_s`."""
    received: list[aiomqtt.Message] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                received.append(message)
                if len(received) >= count:
                    break
    return received


def _text(message: aiomqtt.Message) -> str:
    assert isinstance(message.payload, bytes)
    return message.payload.decode()


def _expected_statuses(scenario: Scenario) -> dict[str, list[tuple[str, bool]]]:
    online, offline = ("online", True), ("offline", True)
    statuses = {device.id: [online, offline] for device in scenario.devices}
    # BB-1 drops at 50 s (the broker publishes its will) and reconnects at 80 s.
    statuses["BB-1"] = [online, offline, online, offline]
    return statuses


async def test_run_publishes_exactly_the_predicted_feed(mqtt_url, all_kinds):
    prefix = "t-feed"
    expected = list(iter_messages(all_kinds, seed=SEED, start=START))
    statuses = _expected_statuses(all_kinds)
    total = len(expected) + sum(len(s) for s in statuses.values())
    async with subscriber(mqtt_url, f"{prefix}/#") as sub:
        stats = await run_scenario(
            all_kinds, mqtt_url=mqtt_url, topic_prefix=prefix, speed=None, seed=SEED, start=START
        )
        received = await collect(sub, total)
        extra = await collect(sub, 1, timeout_s=0.3)

    assert len(received) == total
    assert extra == []
    data: defaultdict[str, list[object]] = defaultdict(list)
    status: defaultdict[str, list[tuple[str, bool]]] = defaultdict(list)
    for message in received:
        topic = message.topic.value
        if topic.endswith("/status"):
            status[topic.split("/")[1]].append((_text(message), message.retain))
        else:
            data[topic].append(json.loads(_text(message)))
    predicted: defaultdict[str, list[object]] = defaultdict(list)
    for sim in expected:
        predicted[sim.topic(prefix)].append(sim.payload)
    assert data == predicted
    assert status == statuses
    assert stats.total == len(expected) + sum(len(s) for s in statuses.values()) - 1  # the will
    assert stats.drops == 1


async def test_abrupt_offline_makes_the_broker_publish_the_will(mqtt_url, all_kinds):
    prefix = "t-will"
    async with subscriber(mqtt_url, f"{prefix}/BB-1/#") as sub:
        await run_scenario(
            all_kinds, mqtt_url=mqtt_url, topic_prefix=prefix, speed=None, seed=SEED, start=START
        )
        received = [(m.topic.value.rsplit("/", 1)[1], _text(m)) for m in await collect(sub, 14)]
    will = received.index(("status", "offline"))
    # The will arrives after the last reading before the drop at 50 s and before the
    # `online` of the reconnect at 80 s.
    before_will = [json.loads(text)["ts"] for kind, text in received[:will] if kind == "telemetry"]
    assert before_will[-1] == "2025-06-01T08:00:40.000Z"
    assert received[will + 1] == ("status", "online")


async def test_cancel_goes_offline_cleanly_and_statuses_are_retained(mqtt_url, all_kinds):
    prefix = "t-cancel"
    stats = RunStats()
    run = run_scenario(
        all_kinds, mqtt_url=mqtt_url, topic_prefix=prefix, speed=1.0, duration_s=3600, stats=stats
    )
    async with subscriber(mqtt_url, f"{prefix}/+/status") as watcher:
        task = asyncio.create_task(run, name="scenario")
        assert len(await collect(watcher, len(all_kinds.devices))) == len(all_kinds.devices)
    async with subscriber(mqtt_url, f"{prefix}/+/status") as late:
        during = {(m.topic.value, _text(m), m.retain) for m in await collect(late, 5)}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with subscriber(mqtt_url, f"{prefix}/+/status") as later:
        after = {(m.topic.value, _text(m), m.retain) for m in await collect(later, 5)}

    ids = [device.id for device in all_kinds.devices]
    assert during == {(f"{prefix}/{i}/status", "online", True) for i in ids}
    assert after == {(f"{prefix}/{i}/status", "offline", True) for i in ids}
    assert {i: stats.published[i]["status"] for i in ids} == dict.fromkeys(ids, 2)


async def test_record_then_replay_reproduces_the_feed(mqtt_url, all_kinds, tmp_path: Path):
    prefix = "t-rec"
    path = tmp_path / "feed.jsonl"
    run_count = len(list(iter_messages(all_kinds, seed=SEED, until_s=30))) + 2 * len(
        all_kinds.devices
    )
    ready = asyncio.Event()
    recorder = asyncio.create_task(
        record(mqtt_url, prefix, path, duration_s=10, max_messages=run_count, ready=ready)
    )
    await asyncio.wait_for(ready.wait(), timeout=5)
    await run_scenario(
        all_kinds, mqtt_url=mqtt_url, topic_prefix=prefix, speed=None, duration_s=30, seed=SEED
    )
    assert await asyncio.wait_for(recorder, timeout=10) == run_count

    recording = load_recording(path)
    assert len(recording) == run_count
    assert [m.t for m in recording] == sorted(m.t for m in recording)
    assert {m.retain for m in recording if m.topic.endswith("/status")} == {True}
    assert {m.retain for m in recording if not m.topic.endswith("/status")} == {False}
    async with subscriber(mqtt_url, f"{prefix}/#", retained=False) as sub:
        assert await replay(path, mqtt_url, speed=None) == run_count
        replayed = await collect(sub, run_count)
    assert [(m.topic.value, _text(m)) for m in replayed] == [
        (m.topic, m.payload) for m in recording
    ]


async def test_replay_keeps_the_recorded_pacing_scaled_by_speed(mqtt_url, tmp_path: Path):
    path = tmp_path / "paced.jsonl"
    lines = [
        {"topic": "t-pace/RG-9/telemetry", "payload": f'{{"rain_mm":{i}}}', "t": 0.3 * i}
        for i in range(3)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await replay(path, mqtt_url, speed=2.0) == 3
    assert 0.3 <= loop.time() - began < 2.0


def test_cli_runs_a_scenario_and_prints_a_summary(mqtt_url, capsys):
    argv = ["--scenario", str(ALL_KINDS), "--mqtt-url", mqtt_url, "--speed", "full"]
    assert main([*argv, "--duration", "30", "--prefix", "t-cli"]) == 0
    out = capsys.readouterr().out
    assert "scenario all_kinds" in out
    assert "EL-1" in out
    assert "over 30.0 s of scenario time" in out
