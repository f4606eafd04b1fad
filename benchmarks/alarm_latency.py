"""Alarm latency under load: an entrapment's publish to its case and its signed webhook.

    .venv/bin/python -m benchmarks.alarm_latency [--background-rate 20000] [--alarms 50]
                                                 [--store embedded|influx]

One private Mosquitto (the shipped deploy/mosquitto/gridwatch.conf on a free loopback port),
`gridwatch run` as a subprocess configured by GRIDWATCH_* variables, with a sensors file of
--sensors background sensors (rain gauges, billboard tilt sensors, elevators: the feed of
benchmarks/ingest.py, `ts` the publish time in Unix ms, values that raise nothing) and
--alarms elevators that will report an entrapment. Webhooks go to a WebhookReceiver
(tests/servers/webhook_receiver.py) that verifies every Standard Webhooks signature and records
when each delivery arrived; `--store influx` adds a private InfluxDB 1.x.

1. gridwatch starts; the alarm elevators each report once, parked at a floor (door closed,
   normal mode: nothing to raise, and nothing that could clear the fault later);
2. background publishers (processes of their own, one per 10,000 msgs/s unless --publishers
   says, each a paho client on one connection with a share of the sensors) publish the feed
   at QoS 1 at --background-rate messages per second in all, paced against the clock, for
   --warmup seconds first;
3. each alarm elevator then publishes `{"ts": <ms>, "fault": "entrapment"}` to
   `gridwatch/{id}/event` (QoS 1), --spacing-ms apart, from another paho client; the time
   right before publish() and the time its PUBACK came are recorded. `elevator_fault` makes an
   entrapment red at once, and each alarm elevator is fresh (new database, no open case, never
   in inspection mode), so its first entrapment opens exactly one case;
4. until every alarm has a case and an opened webhook (or --timeout), and --settle seconds
   more to catch duplicates, with the background still running.

Latencies, from the time before publish():
- case listed by the API: GET /api/v1/cases (admin key, every queue) is polled every
  --poll-ms; a case counts from the response that first lists it, so the figure is an upper
  bound of the commit time, late by up to a poll period plus a round trip (both printed).
  The case's `opened_at` cannot be used: it is the alarm time, i.e. the reading's `ts`
  (cases/service.py opens the case with `opened_at=alarm.at`, and the engine raises at
  `reading.ts`), so opened_at - publish is ~0 whatever the delay; it is printed as a check.
- webhook received: the receiver's arrival time of the verified `gridwatch.case.opened`
  delivery for the alarm's sensor (data.sensor_id).

Also printed, over the window from the first entrapment to the last result: the background
rate achieved (PUBACKs per second), gridwatch's gridwatch_readings_total rate from /metrics,
its backlog (published minus counted by gridwatch, as a range: the publishers' PUBACK counts
lag when they are short of CPU), and the CPU each process and the whole machine used (a
saturated machine slows everything, the load generator included). Every alarm must produce
exactly one case and one opened webhook (one event id, delivered once), and the background no
case at all; the exit status is 1 when not.
"""

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from tests.servers.mosquitto import MosquittoServer
from tests.servers.ports import free_port
from tests.servers.webhook_receiver import Delivery, WebhookReceiver, new_secret

from benchmarks.ingest import (
    GRID,
    GRIDWATCH,
    INFLUX_DB,
    INTERVAL_S,
    PREFIX,
    Feed,
    cpu_seconds,
    influx_points,
    metric_sum,
    private_influx,
)
from benchmarks.stats import percentile

ALARM_ID = "ELA-{:04d}"  # the alarm elevators; the background ones are EL-000002 ...
OPENED = "gridwatch.case.opened"
ALARM_RULE = "elevator_fault"

CONNECT_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 120.0  # gridwatch start-up (migrations, sensors file) up to /readyz 200
PARKED_TIMEOUT_S = 30.0  # the alarm elevators' first reports counted by gridwatch
STOP_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 10.0
# Background messages handed to paho and not yet acknowledged, per publisher. Equal to paho's
# in-flight limit, so paho never queues a message it may not send yet.
WINDOW = 2_000
CATCH_UP_S = 0.1  # a publisher behind its schedule bursts at most this much to catch up
PER_PUBLISHER = 10_000  # msgs/s per background publisher process (one paho manages ~17,000)
PAGE = 20  # newest cases per poll; a full listing when the total says some were missed


# --- small helpers ----------------------------------------------------------------------------


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311
    )


def _stats(values_s: list[float]) -> str:
    if not values_s:
        return "no values"
    ms = [v * 1000 for v in values_s]
    return (
        f"median {percentile(ms, 0.5):8.1f}  p90 {percentile(ms, 0.9):8.1f}  "
        f"p99 {percentile(ms, 0.99):8.1f}  max {max(ms):8.1f}  min {min(ms):8.1f} ms  (n={len(ms)})"
    )


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


def _wait(predicate: Any, timeout: float, what: str, *, alive: Any = None) -> None:
    """Poll `predicate` every 50 ms for up to `timeout` s; `alive` raises if a process died."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done in {timeout:.0f} s")
        time.sleep(0.05)


# --- the background publisher (a process of its own) -------------------------------------------


@dataclass
class Background:
    """The publisher processes and the counters they share with us."""

    processes: list[Any]  # multiprocessing.context.SpawnProcess
    sent: list[Any]  # multiprocessing.Value("q") per process, written by that process only
    acked: list[Any]
    ready: list[Any]  # multiprocessing.Event per process
    stop: Any

    @property
    def pids(self) -> list[int]:
        """Process ids of the publishers."""
        return [p.pid for p in self.processes if p.pid is not None]

    def counts(self) -> tuple[int, int]:
        """(messages handed to paho, messages the broker acknowledged), all publishers."""
        return sum(v.value for v in self.sent), sum(v.value for v in self.acked)

    def is_ready(self) -> bool:
        """Every publisher is connected (and publishing)."""
        return all(event.is_set() for event in self.ready)

    def check(self) -> None:
        """Raise if a publisher died."""
        for process in self.processes:
            if not process.is_alive() and not self.stop.is_set():
                raise RuntimeError(f"background publisher exited with {process.exitcode}")

    def close(self) -> None:
        """Stop publishing (bounded), then terminate any that hangs."""
        self.stop.set()
        for process in self.processes:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.terminate()
                process.join(5.0)
                print(f"  background publisher {process.pid} did not stop in time; terminated")


def start_background(
    host: str, port: int, sensors: int, rate: float, expected: int, publishers: int
) -> Background:
    """Start `publishers` processes, each with a share of the sensors and of the rate."""
    ctx = mp.get_context("spawn")  # no fork of a process that runs threads
    stop = ctx.Event()
    background = Background([], [], [], [], stop)
    for part in range(publishers):
        sent, acked = ctx.Value("q", 0, lock=False), ctx.Value("q", 0, lock=False)
        ready = ctx.Event()
        process = ctx.Process(
            target=_publish_background,
            args=(host, port, sensors, part, publishers, rate, expected, sent, acked, ready),
            kwargs={"stop": stop},
            name=f"bench-background-{part}",
            daemon=True,
        )
        process.start()
        background.processes.append(process)
        background.sent.append(sent)
        background.acked.append(acked)
        background.ready.append(ready)
    return background


def _publish_background(
    host: str,
    port: int,
    sensors: int,
    part: int,
    parts: int,
    rate: float,
    expected: int,
    sent_out: Any,
    acked_out: Any,
    ready: Any,
    *,
    stop: Any,
) -> None:
    """Publish sensors part, part + parts, ... at rate / parts msgs/s, QoS 1, until `stop`.

    One thread drives paho, with no network thread: publish() writes at once and loop(0)
    reads the PUBACKs, so no message is handed to another thread under the GIL.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us with `stop`
    feed = Feed(sensors, expected)  # the whole feed's size: the same rain per sensor
    feed.devices = feed.devices[part::parts]
    rate /= parts
    messages = feed.messages(10**12)
    client = _client(f"bench-bg-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(WINDOW)
    connected = threading.Event()
    acked = 0

    def on_connect(_c: object, _u: object, _f: object, reason: Any, _p: object) -> None:
        if not reason.is_failure:
            connected.set()

    def on_publish(_c: object, _u: object, _mid: int, _reason: object, _p: object) -> None:
        nonlocal acked
        acked += 1

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(host, port, keepalive=60)
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not connected.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError(f"background publisher: no CONNACK in {CONNECT_TIMEOUT_S} s")
        client.loop(timeout=0.05)
    ready.set()
    sent = 0
    start = time.monotonic()
    burst = max(1, int(rate * CATCH_UP_S))
    while not stop.is_set():
        due = int((time.monotonic() - start) * rate) - sent
        if due > burst:  # behind: forget the deficit beyond one burst
            start += (due - burst) / rate
            due = burst
        batch = max(0, min(due, WINDOW - (sent - acked), 500))
        for _ in range(batch):
            topic, payload = next(messages)
            client.publish(topic, payload, qos=1)
        sent += batch
        sent_out.value = sent
        if batch:
            client.loop(timeout=0.0)  # read the PUBACKs that came, without waiting
        elif sent - acked >= WINDOW:
            client.loop(timeout=0.005)  # the window is full: wait for PUBACKs, do not spin
        else:  # ahead of the schedule: publish in ticks of 1 ms or more, not message by message
            next_due = start + (sent + 1) / rate - time.monotonic()
            client.loop(timeout=min(max(next_due, 0.001), 0.005))
        acked_out.value = acked
    deadline = time.monotonic() + 10.0  # collect the last acknowledgements
    while acked < sent and time.monotonic() < deadline:
        client.loop(timeout=0.05)
    acked_out.value = acked
    client.disconnect()


# --- the alarm publisher -----------------------------------------------------------------------


@dataclass
class Alarm:
    """One entrapment: when it was published and what came of it (Unix seconds)."""

    sensor_id: str
    published: float = 0.0  # time.time() right before publish()
    ts_ms: int = 0
    mid: int = -1
    puback: float | None = None
    case_seen: float | None = None  # first poll response listing its case
    case: dict[str, Any] | None = None
    webhook: float | None = None  # receiver's arrival time of the opened delivery


class AlarmPublisher:
    """A paho client (network thread) that publishes events and records their PUBACK times."""

    def __init__(self, broker: MosquittoServer) -> None:
        self._lock = threading.Lock()
        self._by_mid: dict[int, Alarm] = {}
        self._connected = threading.Event()
        self.published = 0
        self.client = _client(f"bench-alarm-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect(broker.host, broker.port, keepalive=60)
        self.client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S):
            self.close()
            raise TimeoutError(f"alarm publisher: no CONNACK in {CONNECT_TIMEOUT_S} s")

    def _on_connect(self, _c: object, _u: object, _f: object, reason: Any, _p: object) -> None:
        if not reason.is_failure:
            self._connected.set()

    def _on_publish(self, _c: object, _u: object, mid: int, _r: object, _p: object) -> None:
        now = time.time()
        with self._lock:
            alarm = self._by_mid.pop(mid, None)
        if alarm is not None:
            alarm.puback = now

    def publish(self, topic: str, body: dict[str, object]) -> None:
        """Publish without tracking (the parked reports)."""
        self.client.publish(topic, json.dumps(body), qos=1)
        self.published += 1

    def entrapment(self, alarm: Alarm) -> None:
        """Publish the alarm's entrapment; `ts` is the publish time."""
        with self._lock:  # on_publish waits until the mid is registered
            alarm.published = time.time()
            alarm.ts_ms = int(alarm.published * 1000)
            payload = json.dumps({"ts": alarm.ts_ms, "fault": "entrapment"})
            info = self.client.publish(f"{PREFIX}/{alarm.sensor_id}/event", payload, qos=1)
            alarm.mid = info.mid
            self._by_mid[info.mid] = alarm
            self.published += 1

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


# --- gridwatch ---------------------------------------------------------------------------------


class Gridwatch:
    """`gridwatch run` as a subprocess, and its API."""

    def __init__(self, run_dir: Path, env: dict[str, str], http_port: int, key: str) -> None:
        self.log_path = run_dir / "gridwatch.log"
        self.base_url = f"http://127.0.0.1:{http_port}"
        self.http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=HTTP_TIMEOUT_S,
            trust_env=False,
        )
        self.key = key
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(GRIDWATCH), "run"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches us; we stop it in order
            )

    def check(self) -> None:
        """Raise if gridwatch exited."""
        if self.process.poll() is not None:
            raise RuntimeError(
                f"gridwatch exited with {self.process.returncode}:\n{_tail(self.log_path)}"
            )

    def wait_ready(self) -> None:
        """Until GET /readyz answers 200 (database and MQTT up), bounded."""

        def ready() -> bool:
            try:
                return self.http.get("/readyz", timeout=1.0).status_code == httpx.codes.OK
            except httpx.HTTPError:
                return False

        _wait(ready, READY_TIMEOUT_S, "gridwatch /readyz", alive=self.check)

    def metrics(self) -> dict[str, float]:
        """The counters this benchmark reads, and when they were read."""
        text = self.http.get("/metrics").raise_for_status().text
        return {
            "at": time.time(),
            "readings": metric_sum(text, "gridwatch_readings_total"),
            "rejected": metric_sum(text, "gridwatch_messages_rejected_total"),
            "alarms": metric_sum(text, "gridwatch_alarm_events_total"),
            "case_events": metric_sum(text, "gridwatch_case_events_total"),
        }

    def all_cases(self) -> list[dict[str, Any]]:
        """Every case, city and maintenance, newest first."""
        items: list[dict[str, Any]] = []
        while True:
            page = (
                self.http.get(
                    "/api/v1/cases", params={"queue": "all", "limit": 500, "offset": len(items)}
                )
                .raise_for_status()
                .json()
            )
            items += page["items"]
            if not page["items"] or len(items) >= page["total"]:
                return items

    def stop(self) -> None:
        """SIGINT (a user's Ctrl-C), then SIGKILL if it hangs."""
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
                print(f"  gridwatch did not stop on SIGINT in {STOP_TIMEOUT_S:.0f} s; killed")
        if self.process.returncode not in (0, -signal.SIGKILL):
            print(f"  gridwatch exited with {self.process.returncode}:\n{_tail(self.log_path)}")


class CasePoller(threading.Thread):
    """Polls GET /api/v1/cases and records when each case was first listed."""

    def __init__(self, base_url: str, key: str, interval_s: float) -> None:
        super().__init__(name="case-poller", daemon=True)
        self._base_url, self._key, self._interval_s = base_url, key, interval_s
        self._stop_event = threading.Event()
        self.lock = threading.Lock()
        self.seen: dict[str, tuple[float, dict[str, Any]]] = {}  # case id -> (time, case)
        self.round_trips: list[float] = []
        self.cycles: list[float] = []
        self.errors = 0
        self.full_listings = 0

    def stop(self) -> None:
        """Stop after the current poll (bounded)."""
        self._stop_event.set()
        self.join(HTTP_TIMEOUT_S + 5.0)

    def run(self) -> None:
        """Poll until stopped."""
        headers = {"Authorization": f"Bearer {self._key}"}
        with httpx.Client(
            base_url=self._base_url, headers=headers, timeout=HTTP_TIMEOUT_S, trust_env=False
        ) as http:
            last_start: float | None = None
            while not self._stop_event.is_set():
                started = time.time()
                if last_start is not None:
                    self.cycles.append(started - last_start)
                last_start = started
                try:
                    self._poll(http, started)
                except (httpx.HTTPError, ValueError, KeyError):
                    self.errors += 1
                self._stop_event.wait(max(0.0, self._interval_s - (time.time() - started)))

    def _poll(self, http: httpx.Client, started: float) -> None:
        params: dict[str, Any] = {"queue": "all", "limit": PAGE}
        page = http.get("/api/v1/cases", params=params).raise_for_status().json()
        answered = time.time()
        self.round_trips.append(answered - started)
        self._record(page["items"], answered)
        offset = PAGE
        # Newest first by opened_at (the alarm time): a case committed late can sit below
        # the first page; the total tells when something is missing, then page through.
        while page["total"] > len(self.seen) and offset < page["total"]:
            self.full_listings += 1
            params |= {"limit": 500, "offset": offset}
            page = http.get("/api/v1/cases", params=params).raise_for_status().json()
            self._record(page["items"], time.time())
            offset += 500

    def _record(self, items: list[dict[str, Any]], at: float) -> None:
        with self.lock:
            for item in items:
                self.seen.setdefault(item["id"], (at, item))


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """Counters of every party at one moment."""

    at: float
    sent: int
    acked: int
    metrics: dict[str, float]
    others: int  # messages the alarm publisher published
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def backlog(self) -> str:
        """Messages published that gridwatch has not counted yet, as a range.

        Low: counting what the publishers saw acknowledged (a publisher short of CPU reads its
        PUBACKs late, so this can be negative); high: counting what they handed to paho.
        """
        counted = int(self.metrics["readings"] + self.metrics["rejected"])
        low, high = self.acked + self.others - counted, self.sent + self.others - counted
        return f"{low:,}..{high:,}"


def _snapshot(
    bg: Background, gw: Gridwatch, publisher: "AlarmPublisher", pids: dict[str, list[int]]
) -> Snapshot:
    # gridwatch first: what it counted was acknowledged to the publishers before.
    metrics = gw.metrics()
    sent, acked = bg.counts()
    cpu = {"machine (all processes)": _machine_busy_seconds()}
    for role, role_pids in pids.items():
        with contextlib.suppress(OSError):
            if role_pids:
                cpu[role] = sum(cpu_seconds(pid) for pid in role_pids)
    return Snapshot(time.time(), sent, acked, metrics, publisher.published, cpu)


def _machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _sensors_yaml(feed: Feed, alarms: list[Alarm]) -> str:
    document = yaml.safe_load(feed.sensors_yaml())
    for alarm in alarms:
        document["sensors"].append(
            {
                "id": alarm.sensor_id,
                "kind": "elevator",
                "grid": GRID,
                "interval_s": INTERVAL_S,
                "status": "active",
            }
        )
    return yaml.safe_dump(document, sort_keys=False)


def run(args: argparse.Namespace) -> bool:
    """Set up, measure, report; True when every alarm made exactly one case and webhook."""
    alarms = [Alarm(ALARM_ID.format(n)) for n in range(1, args.alarms + 1)]
    duration = args.warmup + args.alarms * args.spacing_ms / 1000 + 30.0
    expected = int(args.background_rate * duration)  # sizes the rain so none alarms
    publishers = args.publishers or max(1, math.ceil(args.background_rate / PER_PUBLISHER))
    feed = Feed(args.sensors, expected)
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="gw-alarm-"))
            workdir = Path(tmp)
        else:
            args.workdir.mkdir(parents=True, exist_ok=True)
            workdir = Path(tempfile.mkdtemp(prefix="alarm-latency-", dir=args.workdir))
            print(f"files and logs in {workdir}")
        sensors_file = workdir / "sensors.yaml"
        sensors_file.write_text(_sensors_yaml(feed, alarms), encoding="utf-8")

        broker = MosquittoServer(workdir=workdir / "mosquitto")
        broker.start()
        stack.callback(broker.stop)
        receiver = WebhookReceiver(secret=new_secret())
        receiver.start()
        stack.callback(receiver.close)
        influx = stack.enter_context(private_influx(workdir, args.store == "influx"))
        if influx is not None:
            influx.create_database(INFLUX_DB)

        run_dir = workdir / "gridwatch"
        run_dir.mkdir()
        key, http_port = secrets.token_hex(16), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDWATCH_")}
        env |= {
            "GRIDWATCH_DATA_DIR": str(run_dir / "var"),
            "GRIDWATCH_MQTT_URL": broker.url,
            "GRIDWATCH_HTTP_PORT": str(http_port),
            "GRIDWATCH_ADMIN_KEY": key,
            "GRIDWATCH_SENSORS_FILE": str(sensors_file),
            "GRIDWATCH_WEBHOOK_URL": receiver.url,
            "GRIDWATCH_WEBHOOK_SECRET": receiver.secret,
        }
        if influx is not None:
            env |= {"GRIDWATCH_INFLUX_URL": influx.url, "GRIDWATCH_INFLUX_DATABASE": INFLUX_DB}
        print(
            f"broker {broker.url}; store {args.store}; {len(feed.devices):,} background sensors "
            f"at {args.background_rate:,.0f} msgs/s target (publisher processes: {publishers}); "
            f"{args.alarms} alarm elevators, "
            f"{args.spacing_ms:.0f} ms apart; {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        gw = Gridwatch(run_dir, env, http_port, key)
        stack.callback(gw.stop)
        gw.wait_ready()
        print("gridwatch ready", flush=True)

        publisher = AlarmPublisher(broker)
        stack.callback(publisher.close)
        before = gw.metrics()["readings"]
        for alarm in alarms:  # parked at a floor, normal mode: raises nothing, clears nothing
            publisher.publish(
                f"{PREFIX}/{alarm.sensor_id}/telemetry",
                {
                    "ts": int(time.time() * 1000),
                    "floor": 1,
                    "direction": "none",
                    "door": "closed",
                    "moving": False,
                    "in_door_zone": True,
                    "mode": "normal",
                },
            )
        _wait(
            lambda: gw.metrics()["readings"] >= before + len(alarms),
            PARKED_TIMEOUT_S,
            "the alarm elevators' parked reports",
            alive=gw.check,
        )

        bg = start_background(
            broker.host, broker.port, args.sensors, args.background_rate, expected, publishers
        )
        stack.callback(bg.close)
        _wait(bg.is_ready, CONNECT_TIMEOUT_S + 20.0, "background publishers", alive=bg.check)
        pids = {
            "gridwatch": [gw.process.pid],
            "broker": [broker.pid] if broker.pid is not None else [],
            "publishers": bg.pids,
            "influxd": [influx.pid] if influx is not None and influx.pid is not None else [],
            "this process": [os.getpid()],
        }
        warm = _snapshot(bg, gw, publisher, pids)
        deadline = time.monotonic() + args.warmup
        while time.monotonic() < deadline:
            gw.check()
            bg.check()
            time.sleep(0.1)

        poller = CasePoller(gw.base_url, key, args.poll_ms / 1000)
        start = _snapshot(bg, gw, publisher, pids)
        poller.start()
        stack.callback(poller.stop)
        print(
            f"warm-up {start.at - warm.at:.1f} s: background {_rate(warm, start):,.0f} msgs/s "
            f"acknowledged, gridwatch {_readings_rate(warm, start):,.0f} readings/s, "
            f"backlog {start.backlog}; publishing {len(alarms)} entrapments ...",
            flush=True,
        )
        first = time.monotonic()
        for n, alarm in enumerate(alarms):
            pause = first + n * args.spacing_ms / 1000 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            publisher.entrapment(alarm)
        published = _snapshot(bg, gw, publisher, pids)

        by_sensor = {alarm.sensor_id: alarm for alarm in alarms}

        def collect() -> bool:
            with poller.lock:
                for at, case in poller.seen.values():
                    alarm = by_sensor.get(case.get("sensor_id") or "")
                    if alarm is not None and alarm.case_seen is None:
                        alarm.case_seen, alarm.case = at, case
            for delivery in receiver.received:
                alarm = _opened_for(delivery, by_sensor)
                if alarm is not None and alarm.webhook is None:
                    alarm.webhook = delivery.arrived_at.timestamp()
            return all(a.case_seen is not None and a.webhook is not None for a in alarms)

        def alive() -> None:
            gw.check()
            bg.check()

        try:
            _wait(collect, args.timeout, "every alarm's case and webhook", alive=alive)
        except TimeoutError as err:
            print(f"  {err}")
        done = _snapshot(bg, gw, publisher, pids)
        time.sleep(args.settle)  # a duplicate case or webhook would show up now
        collect()
        poller.stop()
        settled = _snapshot(bg, gw, publisher, pids)
        bg.close()

        cases = gw.all_cases()
        ok = _report(alarms, poller, receiver, cases, start, published, done, settled)
        if influx is not None:
            print(f"InfluxDB: {influx_points(influx):,} points in {INFLUX_DB}")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        return ok


def _opened_for(delivery: Delivery, by_sensor: dict[str, Alarm]) -> Alarm | None:
    body = delivery.json
    if not isinstance(body, dict) or body.get("type") != OPENED:
        return None
    return by_sensor.get((body.get("data") or {}).get("sensor_id") or "")


def _rate(a: Snapshot, b: Snapshot) -> float:
    return (b.acked - a.acked) / (b.at - a.at) if b.at > a.at else 0.0


def _readings_rate(a: Snapshot, b: Snapshot) -> float:
    seconds = b.metrics["at"] - a.metrics["at"]
    return (b.metrics["readings"] - a.metrics["readings"]) / seconds if seconds > 0 else 0.0


def _report(
    alarms: list[Alarm],
    poller: CasePoller,
    receiver: WebhookReceiver,
    cases: list[dict[str, Any]],
    start: Snapshot,
    published: Snapshot,
    done: Snapshot,
    settled: Snapshot,
) -> bool:
    """Print the figures and the checks; True when every check passed."""
    window = done.at - start.at
    print(f"\nalarm window {window:.1f} s (first entrapment to the last case and webhook)")
    print(
        f"  background published {_rate(start, done):,.0f} msgs/s acknowledged by the broker "
        f"({(done.sent - start.sent) / window:,.0f} msgs/s handed to paho)"
    )
    print(
        f"  gridwatch_readings_total {_readings_rate(start, done):,.0f} readings/s; "
        f"backlog (published, not yet counted) {start.backlog} at the first "
        f"entrapment, {published.backlog} at the last, {done.backlog} at the end"
    )
    cores = "  ".join(
        f"{role} {(done.cpu[role] - start.cpu[role]) / window:.2f}"
        for role in done.cpu
        if role in start.cpu
    )
    print(f"  CPU, cores busy: {cores}")
    print(
        f"  rejected messages {done.metrics['rejected'] - start.metrics['rejected']:,.0f}, "
        f"alarm events {settled.metrics['alarms']:,.0f}, "
        f"case events {settled.metrics['case_events']:,.0f} (whole run)"
    )

    print("\nlatency from time.time() before publish():")
    pubacks = [a.puback - a.published for a in alarms if a.puback is not None]
    case_lat = [a.case_seen - a.published for a in alarms if a.case_seen is not None]
    hook_lat = [a.webhook - a.published for a in alarms if a.webhook is not None]
    print(f"  broker PUBACK          {_stats(pubacks)}")
    print(f"  case listed by the API {_stats(case_lat)}")
    print(f"  webhook case.opened    {_stats(hook_lat)}")
    skew = [_iso_seconds(a.case["opened_at"]) - a.published for a in alarms if a.case is not None]
    print(f"  (check) opened_at - publish: {_stats(skew)}: opened_at is the alarm's `ts`")
    if poller.round_trips:
        print(
            f"  case polling: every {percentile(poller.cycles, 0.5) * 1000:.0f} ms (median "
            f"cycle), round trip median {percentile(poller.round_trips, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(poller.round_trips, 0.99) * 1000:.1f} ms; {poller.errors} errors, "
            f"{poller.full_listings} full listings"
        )

    problems: list[str] = []
    alarm_ids = {a.sensor_id for a in alarms}
    per_sensor: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        per_sensor.setdefault(case.get("sensor_id") or "", []).append(case)
    for alarm in alarms:
        mine = per_sensor.get(alarm.sensor_id, [])
        if len(mine) != 1:
            problems.append(f"{alarm.sensor_id}: {len(mine)} cases")
        elif mine[0]["rule_id"] != ALARM_RULE or mine[0]["severity"] != "red":
            problems.append(f"{alarm.sensor_id}: case {mine[0]['rule_id']} {mine[0]['severity']}")
        if alarm.puback is None:
            problems.append(f"{alarm.sensor_id}: no PUBACK")
    others = [c for c in cases if c.get("sensor_id") not in alarm_ids]
    if others:
        rules = sorted({f"{c['sensor_id']}/{c['rule_id']}" for c in others})[:10]
        problems.append(f"{len(others)} cases from background sensors: {rules}")
    opened: dict[str, set[str]] = {}
    deliveries: dict[str, int] = {}
    by_sensor = {a.sensor_id: a for a in alarms}
    for delivery in receiver.received:
        target = _opened_for(delivery, by_sensor)
        if target is not None:
            opened.setdefault(target.sensor_id, set()).add(delivery.event_id or "")
            deliveries[target.sensor_id] = deliveries.get(target.sensor_id, 0) + 1
    for alarm in alarms:
        events, count = opened.get(alarm.sensor_id, set()), deliveries.get(alarm.sensor_id, 0)
        if len(events) != 1 or count != 1:
            problems.append(f"{alarm.sensor_id}: {len(events)} opened events in {count} deliveries")
    if receiver.rejected:
        problems.append(f"{len(receiver.rejected)} webhook requests failed verification")
    types: dict[str, int] = {}
    for delivery in receiver.received:
        kind = delivery.json.get("type", "?") if isinstance(delivery.json, dict) else "?"
        types[kind] = types.get(kind, 0) + 1
    print(f"\nwebhooks received (verified): {types or 'none'}; cases in total: {len(cases)}")
    if problems:
        print(f"FAILED: {len(problems)} problems")
        for problem in problems[:30]:
            print(f"  {problem}")
        return False
    print(f"OK: each of {len(alarms)} alarms made exactly one case and one opened webhook")
    return True


def _iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    """Parse the arguments, run, exit 1 when a check failed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--background-rate", type=float, default=20_000.0, help="msgs/s")
    parser.add_argument("--sensors", type=int, default=1_000, help="background sensors")
    parser.add_argument("--alarms", type=int, default=50)
    parser.add_argument(
        "--publishers",
        type=int,
        default=0,
        help=f"background publisher processes (default: one per {PER_PUBLISHER:,} msgs/s)",
    )
    parser.add_argument("--spacing-ms", type=float, default=200.0, help="between entrapments")
    parser.add_argument("--store", choices=("embedded", "influx"), default="embedded")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of background first")
    parser.add_argument("--poll-ms", type=float, default=25.0, help="GET /api/v1/cases period")
    parser.add_argument("--timeout", type=float, default=120.0, help="for the last result")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to catch duplicates")
    parser.add_argument("--workdir", type=Path, help="keep the files and logs here")
    args = parser.parse_args()
    if args.background_rate <= 0 or args.sensors < 1 or not 1 <= args.alarms <= 9999:
        parser.error("--background-rate must be > 0, --sensors >= 1, --alarms 1..9999")
    if not 0 <= args.publishers <= args.sensors:
        parser.error("--publishers must be 0 (automatic) .. --sensors")
    sys.exit(0 if run(args) else 1)


if __name__ == "__main__":
    main()
