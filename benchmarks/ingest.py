"""Ingest throughput of `gridwatch run` against a bare paho subscriber, same broker (target 0.8x).

    .venv/bin/python -m benchmarks.ingest [--messages 200000] [--sensors 1000]
                                          [--qos 0|1|both] [--store embedded|influx]

Both consumers drain the same kind of backlog from one private Mosquitto (the shipped
deploy/mosquitto/gridwatch.conf on a free loopback port, `queue_qos0_messages true` so QoS 0
messages queue for an offline session too). For each QoS and each consumer, in turn:

1. the consumer's persistent session is created (clean_session=False, its client id, the
   gridwatch topics at QoS 1) and left offline;
2. a paho publisher sends N canonical telemetry messages over S active sensors at that QoS
   (QoS 1 waits for every PUBACK; a QoS 1 fence after QoS 0 proves the broker has them all);
3. the consumer starts and the clock runs from its first message to its last, so neither the
   publisher's speed nor the service's start-up is counted.

The bare consumer is a paho 2 client that only does json.loads in on_message. gridwatch is
`gridwatch run` as a subprocess configured by environment; its progress is
gridwatch_readings_total from GET /metrics, polled every 100 ms. Sessions are dropped after
each drain, so the next publish queues only for the next consumer. CPU is the share of one
core used by the consumer and by the broker while the consumer drained (from /proc).

Payloads: rain gauges, tilt sensors and elevators, `ts` the publish time in Unix ms (strictly
increasing per sensor), values that raise no alarm (rain kept under the 1 h heavy-rain sum,
tilt within noise of its baseline, calm wind, doors never open while moving).
"""

import argparse
import contextlib
import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from tests.servers.mosquitto import SHIPPED_CONFIG, MosquittoServer, read_options
from tests.servers.ports import free_port

TARGET = 0.8  # gridwatch should drain at least this share of the bare subscriber's rate
PREFIX = "gridwatch"
TOPICS = [(f"{PREFIX}/+/{channel}", 1) for channel in ("telemetry", "event", "status")]
GRIDWATCH = Path(sys.executable).parent / "gridwatch"
GRIDWATCH_CLIENT_ID = "gridwatch-gateway"
FENCE_TOPIC = "bench/fence"  # no consumer subscribes to it
GRID = "110101001001001"
INFLUX_DB = "bench"
INTERVAL_S = 600  # the deadman fires after 3 intervals of silence: never during a run
RAIN_BUDGET_MM = 10.0  # per sensor over the run; heavy rain is 20 mm in 1 h

CONNECT_TIMEOUT_S = 10.0
START_TIMEOUT_S = 120.0  # gridwatch start-up up to its first stored reading
STALL_TIMEOUT_S = 30.0  # no progress for this long after the first message: give up
STOP_TIMEOUT_S = 30.0
PUBLISH_WINDOW = 20_000  # messages handed to paho and not yet acknowledged (written for QoS 0)
PUBLISH_STALL_S = 60.0
POLL_S = 0.1
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the feed ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Device:
    """One sensor of the feed."""

    id: str
    kind: str
    topic: str


class Feed:
    """Canonical telemetry, round robin over the sensors, values that raise no alarm."""

    def __init__(self, sensors: int, messages: int, *, seed: int = 7) -> None:
        self.devices = [_device(n) for n in range(sensors)]
        self._rng = random.Random(seed)
        self._last_ts = [0] * sensors
        # Rain sums over 1 h, and a run lasts minutes: every `stride`-th report of a gauge
        # brings 0.2 mm, so no gauge gets near RAIN_BUDGET_MM however many messages it gets.
        per_sensor = math.ceil(messages / sensors)
        self._rain_stride = max(1, math.ceil(per_sensor * 0.2 / RAIN_BUDGET_MM))

    def sensors_yaml(self) -> str:
        """The GRIDWATCH_SENSORS_FILE registering every device, active."""
        sensors: list[dict[str, object]] = []
        for device in self.devices:
            sensor: dict[str, object] = {
                "id": device.id,
                "kind": device.kind,
                "grid": GRID,
                "interval_s": INTERVAL_S,
                "status": "active",
            }
            if device.kind == "tilt":
                sensor["calibration"] = {"baseline_x_deg": 0.12, "baseline_y_deg": -0.05}
            sensors.append(sensor)
        return yaml.safe_dump({"sensors": sensors}, sort_keys=False)

    def messages(self, count: int) -> Iterator[tuple[str, bytes]]:
        """(topic, payload) pairs; `ts` is now in Unix ms, strictly increasing per sensor."""
        devices, last_ts = self.devices, self._last_ts
        for index in range(count):
            slot = index % len(devices)
            device = devices[slot]
            ts = max(time.time_ns() // 1_000_000, last_ts[slot] + 1)
            last_ts[slot] = ts
            body = self._values(device.kind, index // len(devices))
            yield device.topic, json.dumps({"ts": ts, **body}).encode()

    def _values(self, kind: str, report: int) -> dict[str, object]:
        rng = self._rng
        if kind == "rain_gauge":
            return {"rain_mm": 0.2 if report % self._rain_stride == 0 else 0.0}
        if kind == "tilt":
            return {
                "tilt_x_deg": round(0.12 + rng.gauss(0, 0.005), 4),
                "tilt_y_deg": round(-0.05 + rng.gauss(0, 0.005), 4),
                "wind_ms": round(rng.uniform(1.0, 9.0), 1),
            }
        # An elevator's cycle: stopped at a floor with the door open, then closed, then moving.
        # The door is never open in two reports running nor while moving.
        phase = report % 4
        moving = phase in (1, 3)
        return {
            "floor": rng.randint(1, 18),
            "direction": ("up" if phase == 1 else "down") if moving else "none",
            "door": "open" if phase == 0 else "closed",
            "moving": moving,
            "in_door_zone": not moving,
            "mode": "normal",
        }


_MIX = [("rain_gauge", "RG")] * 4 + [("tilt", "BB")] * 3 + [("elevator", "EL")] * 3


def _device(n: int) -> Device:
    # 40 % rain gauges, 30 % billboard tilt sensors, 30 % elevators.
    kind, code = _MIX[n % len(_MIX)]
    sensor_id = f"{code}-{n:06d}"
    return Device(sensor_id, kind, f"{PREFIX}/{sensor_id}/telemetry")


# --- broker sessions and the publisher ----------------------------------------------------------


def _client(client_id: str, *, clean_session: bool) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )


@contextlib.contextmanager
def _connected(broker: MosquittoServer, client: mqtt.Client) -> Iterator[mqtt.Client]:
    """Connect with a network thread, wait (bounded) for CONNACK, disconnect at the end."""
    connected = threading.Event()

    def on_connect(_c: object, _u: object, _f: object, reason: Any, _p: object) -> None:
        if not reason.is_failure:
            connected.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port, keepalive=60)
    client.loop_start()
    try:
        if not connected.wait(CONNECT_TIMEOUT_S):
            raise TimeoutError(f"no CONNACK from {broker.url} in {CONNECT_TIMEOUT_S} s")
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def create_session(broker: MosquittoServer, client_id: str) -> None:
    """Leave a persistent session subscribed to the gridwatch topics at QoS 1, offline."""
    subscribed = threading.Event()
    client = _client(client_id, clean_session=False)
    client.on_subscribe = lambda _c, _u, _m, codes, _p: subscribed.set()
    with _connected(broker, client):
        client.subscribe(TOPICS)
        if not subscribed.wait(CONNECT_TIMEOUT_S):
            raise TimeoutError(f"no SUBACK for {client_id} in {CONNECT_TIMEOUT_S} s")


def drop_session(broker: MosquittoServer, client_id: str) -> None:
    """Discard a session (and what is queued for it): connect clean, then leave."""
    with _connected(broker, _client(client_id, clean_session=True)):
        pass


def publish(broker: MosquittoServer, feed: Feed, count: int, qos: int) -> float:
    """Publish `count` messages at `qos` and return when the broker has them all (seconds)."""
    client = _client(f"bench-pub-{uuid.uuid4().hex[:8]}", clean_session=True)
    client.max_inflight_messages_set(1000)
    changed = threading.Condition()
    sent = completed = 0

    def on_publish(_c: object, _u: object, _mid: int, _reason: object, _p: object) -> None:
        # QoS 1: the PUBACK came; QoS 0: the packet was written. Runs in the network thread.
        nonlocal completed
        with changed:
            completed += 1
            if room():
                changed.notify()

    def wait_until(predicate: Callable[[], bool], what: str) -> None:
        with changed:
            if not changed.wait_for(predicate, PUBLISH_STALL_S):
                raise TimeoutError(
                    f"{what}: the broker took {completed} of {count} messages "
                    f"and nothing more in {PUBLISH_STALL_S} s"
                )

    def room() -> bool:
        return sent - completed <= PUBLISH_WINDOW // 2

    def all_taken() -> bool:
        return completed >= sent

    client.on_publish = on_publish
    started = time.perf_counter()
    with _connected(broker, client):
        for topic, payload in feed.messages(count):
            # paho numbers messages with 16-bit ids and keeps the unacknowledged ones by id:
            # more than 65,535 queued in the client and they overwrite each other.
            if sent - completed >= PUBLISH_WINDOW:
                wait_until(room, "publishing")
            with changed:
                sent += 1
            client.publish(topic, payload, qos=qos)
        # The broker handles a connection's packets in order: once the fence is acknowledged,
        # every message before it is queued (for QoS 0 nothing else would tell).
        with changed:
            sent += 1
        client.publish(FENCE_TOPIC, b"fence", qos=1)
        wait_until(all_taken, "the last acknowledgements")
    return time.perf_counter() - started


# --- measuring --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (every thread), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state) of proc(5)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass(frozen=True, slots=True)
class Figures:
    """A drain from its first message to its last."""

    seconds: float = 0.0
    rate: float = 0.0  # messages per second over `seconds`
    rate_10_90: float = 0.0  # between 10 % and 90 % of the expected messages
    cores: dict[str, float] = field(default_factory=dict)  # CPU s per s, by process role


@dataclass(frozen=True, slots=True)
class Drain:
    """What one consumer did with one backlog."""

    consumer: str
    qos: int
    expected: int
    counted: int  # messages handled (gridwatch: readings stored)
    rejected: int  # gridwatch: messages set aside
    figures: Figures
    publish_s: float
    alarms: int = 0

    @property
    def lost(self) -> int:
        return self.expected - self.counted - self.rejected


class Progress:
    """A consumer's count over time, with the CPU seconds of the watched processes."""

    def __init__(self, expected: int, pids: dict[str, int | None]) -> None:
        self.expected = expected
        self.pids = {role: pid for role, pid in pids.items() if pid is not None}
        self.samples: list[tuple[float, int, dict[str, float]]] = []

    def sample(self, count: int) -> None:
        """Record the count now."""
        cpu = {role: cpu_seconds(pid) for role, pid in self.pids.items()}
        self.samples.append((time.perf_counter(), count, cpu))

    @property
    def count(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def figures(self) -> Figures:
        """Rates and CPU shares from the first sample with a message to the last."""
        moving = [s for s in self.samples if s[1] > 0]
        if len(moving) < 2:
            return Figures()
        first = moving[0]
        last = next(s for s in moving if s[1] == moving[-1][1])  # when the count stopped
        seconds = last[0] - first[0]
        if seconds <= 0:
            return Figures()
        low, high = self._crossing(0.1 * self.expected), self._crossing(0.9 * self.expected)
        middle = high - low if low is not None and high is not None else 0.0
        return Figures(
            seconds=seconds,
            rate=(last[1] - first[1]) / seconds,
            rate_10_90=0.8 * self.expected / middle if middle > 0 else 0.0,
            cores={role: (last[2][role] - first[2][role]) / seconds for role in self.pids},
        )

    def _crossing(self, count: float) -> float | None:
        """When the count passed `count`, interpolated between the samples around it."""
        before = self.samples[0]
        for sample in self.samples:
            if sample[1] >= count:
                if sample[1] == before[1]:
                    return sample[0]
                share = (count - before[1]) / (sample[1] - before[1])
                return before[0] + share * (sample[0] - before[0])
            before = sample
        return None


class BareSubscriber:
    """paho 2, persistent session, QoS 1, json.loads per message: the floor of any consumer."""

    def __init__(self, broker: MosquittoServer, client_id: str, expected: int) -> None:
        self.broker = broker
        self.expected = expected
        self.count = 0
        self.progress = Progress(expected, {"consumer": os.getpid(), "broker": broker.pid})
        self.done = threading.Event()
        # The samples the figures need: first, 10 %, 90 % and last message.
        self._marks = {1, math.ceil(0.1 * expected), math.ceil(0.9 * expected), expected}
        self.client = _client(client_id, clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe(TOPICS)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: Any) -> None:
        json.loads(message.payload)
        self.count += 1
        if self.count in self._marks:
            self.progress.sample(self.count)
            if self.count >= self.expected:
                self.done.set()

    def run(self) -> None:
        """Drain until every message came, or nothing came for STALL_TIMEOUT_S."""
        watchdog = threading.Thread(target=self._watch, name="bare-watchdog", daemon=True)
        self.client.connect(self.broker.host, self.broker.port, keepalive=60)
        watchdog.start()
        try:
            self.client.loop_forever()
        finally:
            self.done.set()
            watchdog.join(STOP_TIMEOUT_S)

    def _watch(self) -> None:
        seen, since = -1, time.monotonic()
        while not self.done.wait(0.5):
            if self.count != seen:
                seen, since = self.count, time.monotonic()
            limit = STALL_TIMEOUT_S if seen > 0 else START_TIMEOUT_S
            if time.monotonic() - since > limit:
                break
        self.client.disconnect()


def drain_bare(broker: MosquittoServer, feed: Feed, count: int, qos: int) -> Drain:
    """Queue `count` messages for a bare subscriber's offline session and time its drain."""
    client_id = f"bench-bare-qos{qos}"
    create_session(broker, client_id)
    try:
        published = publish(broker, feed, count, qos)
        subscriber = BareSubscriber(broker, client_id, count)
        subscriber.run()
    finally:
        drop_session(broker, client_id)
    return Drain(
        "bare paho",
        qos,
        count,
        subscriber.count,
        0,
        subscriber.progress.figures(),
        published,
    )


def metric_sum(text: str, name: str) -> float:
    """Sum of a Prometheus metric over all its label sets."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """How every gridwatch run of the benchmark is set up."""

    workdir: Path
    sensors_file: Path
    influx: Any = None  # a tests.servers.influxdb.InfluxDBServer for --store influx
    profile: bool = False  # run gridwatch under py-spy, collapsed stacks in the run directory


def drain_gridwatch(
    broker: MosquittoServer, feed: Feed, count: int, qos: int, config: ServiceConfig
) -> Drain:
    """Queue `count` messages for gridwatch's offline session, run it and time its drain."""
    client_id = f"{GRIDWATCH_CLIENT_ID}-qos{qos}"
    run_dir = config.workdir / f"gridwatch-qos{qos}"
    run_dir.mkdir(parents=True, exist_ok=True)
    admin_key = secrets.token_hex(16)
    http_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDWATCH_")}
    env |= {
        "GRIDWATCH_DATA_DIR": str(run_dir / "var"),
        "GRIDWATCH_MQTT_URL": broker.url,
        "GRIDWATCH_MQTT_CLIENT_ID": client_id,
        "GRIDWATCH_HTTP_PORT": str(http_port),
        "GRIDWATCH_ADMIN_KEY": admin_key,
        "GRIDWATCH_SENSORS_FILE": str(config.sensors_file),
    }
    if config.influx is not None:
        env |= {"GRIDWATCH_INFLUX_URL": config.influx.url, "GRIDWATCH_INFLUX_DATABASE": INFLUX_DB}
        # A database of this run's own, so the points counted afterwards are this run's.
        config.influx.drop_database(INFLUX_DB)
        config.influx.create_database(INFLUX_DB)
    log_path = run_dir / "gridwatch.log"
    create_session(broker, client_id)
    process: subprocess.Popen[bytes] | None = None
    try:
        published = publish(broker, feed, count, qos)
        with log_path.open("ab") as log:
            command = [str(GRIDWATCH), "run"]
            if config.profile:
                stacks = run_dir / "py-spy.collapsed"
                command = [
                    str(GRIDWATCH.parent / "py-spy"), "record", "--format", "raw", "--threads",
                    "--rate", "200", "--output", str(stacks), "--", *command,
                ]  # fmt: skip
                print(f"  profiling into {stacks}")
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches us; we stop it in order
            )
        pids = {
            "consumer": process.pid,
            "broker": broker.pid,
            "store": config.influx.pid if config.influx is not None else None,
        }
        progress = Progress(count, pids)
        rejected, alarms = _poll(
            process, progress, f"http://127.0.0.1:{http_port}/metrics", admin_key, log_path
        )
    finally:
        if process is not None:
            _stop(process, log_path)
        drop_session(broker, client_id)
    if config.influx is not None:
        print(f"  InfluxDB holds {influx_points(config.influx):,} points after gridwatch stopped")
    return Drain(
        "gridwatch", qos, count, progress.count, rejected, progress.figures(), published, alarms
    )


def _poll(
    process: subprocess.Popen[bytes],
    progress: Progress,
    url: str,
    admin_key: str,
    log_path: Path,
) -> tuple[int, int]:
    """Read the counters every POLL_S until all messages are accounted for, or it stalls.

    Returns the messages set aside and the alarm events.
    """
    expected = progress.expected
    rejected = alarms = 0
    started = last_change = time.monotonic()
    last_count = 0
    headers = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(headers=headers, timeout=2.0, trust_env=False) as http:
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"gridwatch exited with {process.returncode}:\n{_tail(log_path)}"
                )
            now = time.monotonic()
            try:
                response = http.get(url)
            except httpx.HTTPError:
                response = None  # not listening yet
            if response is not None and response.status_code == httpx.codes.OK:
                readings = int(metric_sum(response.text, "gridwatch_readings_total"))
                rejected = int(metric_sum(response.text, "gridwatch_messages_rejected_total"))
                alarms = int(metric_sum(response.text, "gridwatch_alarm_events_total"))
                progress.sample(readings)
                if readings + rejected >= expected:
                    batches = metric_sum(response.text, "gridwatch_ingest_batch_messages_count")
                    if batches:
                        taken = metric_sum(response.text, "gridwatch_ingest_batch_messages_sum")
                        print(f"  {batches:,.0f} batches, {taken / batches:,.0f} messages each")
                    break
                if readings + rejected != last_count:
                    last_count, last_change = readings + rejected, now
            elif response is not None:
                raise RuntimeError(f"GET /metrics answered {response.status_code}")
            # A failed drain is reported (as lost messages) and the next one still runs.
            if last_count == 0 and now - started > START_TIMEOUT_S:
                print(f"  gridwatch took nothing in {START_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")
                break
            if last_count and now - last_change > STALL_TIMEOUT_S:
                print(f"  gridwatch stalled at {last_count:,} of {expected:,} messages")
                break
            time.sleep(max(0.0, POLL_S - (time.monotonic() - now)))
    return rejected, alarms


def _stop(process: subprocess.Popen[bytes], log_path: Path) -> None:
    """SIGINT (a user's Ctrl-C), then SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)
            print(f"  gridwatch did not stop on SIGINT in {STOP_TIMEOUT_S} s; killed")
    if process.returncode not in (0, -signal.SIGKILL):
        print(f"  gridwatch exited with {process.returncode}:\n{_tail(log_path)}")


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


# --- running it -------------------------------------------------------------------------------


def _broker_overrides(messages: int) -> dict[str, str]:
    """Settings changed from the shipped config: QoS 0 queued too, queues big enough for N."""
    shipped = dict(read_options(SHIPPED_CONFIG))
    overrides = {"queue_qos0_messages": "true"}
    if int(shipped.get("max_queued_messages", "1000")) < messages:
        overrides["max_queued_messages"] = str(messages)
    queued_bytes = int(shipped.get("max_queued_bytes", "0"))  # 0: no limit
    if queued_bytes and queued_bytes < messages * 512:
        overrides["max_queued_bytes"] = str(messages * 512)
    return overrides


def influx_points(influx: Any) -> int:
    """Points in the bench database: per measurement, the count of its most frequent field."""
    body = influx.query("SELECT count(*) FROM /.*/", db=INFLUX_DB)
    total = 0
    for result in body.get("results", ()):
        for series in result.get("series", ()):
            for row in series["values"]:
                total += max((v for v in row[1:] if isinstance(v, int)), default=0)
    return total


@contextlib.contextmanager
def private_influx(workdir: Path, wanted: bool) -> Iterator[Any]:
    """A private InfluxDB 1.x for --store influx, else nothing."""
    if not wanted:
        yield None
        return
    from tests.servers.influxdb import InfluxDBServer  # only needed for this store

    server = InfluxDBServer(workdir=workdir / "influxdb")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _print_table(drains: list[Drain], sensors: int) -> None:
    with_store = any("store" in d.figures.cores for d in drains)
    head = (
        f"{'qos':>3}  {'consumer':<10} {'messages':>9} {'lost':>5} {'rejected':>8} "
        f"{'seconds':>8} {'msgs/s':>8} {'10-90% msgs/s':>13}  {'consumer CPU':>12} "
        f"{'broker CPU':>10}{'  store CPU' if with_store else ''}  {'publish s':>9}"
    )
    print(f"\ningest of canonical telemetry from {sensors:,} sensors, first to last message")
    print(head)
    print("-" * len(head))
    for d in drains:
        f, cores = d.figures, d.figures.cores
        store = ""
        if with_store:
            store = f"  {cores['store']:>8.2f}c" if "store" in cores else f"  {'':>9}"
        print(
            f"{d.qos:>3}  {d.consumer:<10} {d.counted:>9,} {d.lost:>5,} {d.rejected:>8,} "
            f"{f.seconds:>8.2f} {f.rate:>8,.0f} {f.rate_10_90:>13,.0f}  "
            f"{cores.get('consumer', 0.0):>11.2f}c {cores.get('broker', 0.0):>9.2f}c{store}  "
            f"{d.publish_s:>9.1f}"
        )
    print("(CPU: cores busy, CPU seconds per second while that consumer drained)")
    for d in drains:
        if d.lost:
            print(f"QoS {d.qos}, {d.consumer}: {d.lost:,} of {d.expected:,} messages not counted")
    for qos in sorted({d.qos for d in drains}):
        pair = {d.consumer: d.figures for d in drains if d.qos == qos}
        bare, service = pair.get("bare paho"), pair.get("gridwatch")
        if bare is None or service is None or not bare.rate or not bare.rate_10_90:
            continue
        ratio = service.rate / bare.rate
        ratio_10_90 = service.rate_10_90 / bare.rate_10_90
        alarms = next(d.alarms for d in drains if d.qos == qos and d.consumer == "gridwatch")
        print(
            f"QoS {qos}: gridwatch/bare {ratio:.2f}x (10-90 %: {ratio_10_90:.2f}x); "
            f"target {TARGET:.1f}x: {ratio / TARGET:.2f} of it; "
            f"gridwatch alarm events: {alarms}"
        )


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--sensors", type=int, default=1_000)
    parser.add_argument("--qos", choices=("0", "1", "both"), default="1")
    parser.add_argument("--store", choices=("embedded", "influx"), default="embedded")
    parser.add_argument(
        "--workdir", type=Path, help="keep the broker's and gridwatch's files and logs here"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run gridwatch under py-spy (pip install py-spy); needs --workdir",
    )
    args = parser.parse_args()
    if args.messages < 10 or args.sensors < 1:
        parser.error("--messages must be at least 10 and --sensors at least 1")
    qoses = [0, 1] if args.qos == "both" else [int(args.qos)]
    feed = Feed(args.sensors, args.messages)
    drains: list[Drain] = []
    try:
        _run(args.messages, args.store, qoses, feed, drains, args.workdir, profile=args.profile)
    finally:
        # Whatever was measured before a failure is still worth seeing.
        _print_table(drains, args.sensors)


def _run(
    messages: int,
    store: str,
    qoses: list[int],
    feed: Feed,
    drains: list[Drain],
    keep: Path | None,
    *,
    profile: bool = False,
) -> None:
    """Start the servers, measure each consumer at each QoS, stop the servers."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if keep is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gw-ingest-")))
        else:
            workdir = Path(tempfile.mkdtemp(prefix="ingest-", dir=keep))
            print(f"files and logs in {workdir}")
        sensors_file = workdir / "sensors.yaml"
        sensors_file.write_text(feed.sensors_yaml(), encoding="utf-8")
        broker = MosquittoServer(
            workdir=workdir / "mosquitto", overrides=_broker_overrides(messages)
        )
        broker.start()
        try:
            with private_influx(workdir, store == "influx") as influx:
                config = ServiceConfig(workdir, sensors_file, influx, profile)
                print(
                    f"broker {broker.url} (pid {broker.pid}); store {store}; "
                    f"{messages:,} messages over {len(feed.devices):,} sensors; "
                    f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
                )
                steps: list[tuple[str, Callable[[int], Drain]]] = [
                    ("bare paho", lambda q: drain_bare(broker, feed, messages, q)),
                    ("gridwatch", lambda q: drain_gridwatch(broker, feed, messages, q, config)),
                ]
                for qos in qoses:
                    for name, step in steps:
                        print(f"QoS {qos}, {name}: publishing, then draining ...", flush=True)
                        drain = step(qos)
                        print(
                            f"  {drain.counted:,} in {drain.figures.seconds:.2f} s, "
                            f"{drain.figures.rate:,.0f} msgs/s (published in "
                            f"{drain.publish_s:.1f} s)",
                            flush=True,
                        )
                        drains.append(drain)
        finally:
            broker.stop()
            # Other work on the machine skews every figure: say how busy it was.
            print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
