"""The seed district's Modbus fleet from one gateway process: schedule lag and CPU per poll.

    .venv/bin/python -m benchmarks.modbus_fleet [--devices 2000] [--interval 2] [--duration 30]
                                           [--servers 1] [--units-per-port 1]
                                           [--loop uvloop|asyncio]

The simulated fleet runs in --servers processes of its own (this file with --serve, on the
event loop the service uses), so the CPU counted below is the gateway's alone. Each serves its
share of --devices elevator boards (gridwatch.simulators.ModbusDeviceServer, live elevator
models at 1x, model ticks spread over the interval) on free loopback ports, one port and unit 1
per board, or with --units-per-port N device servers holding N units each (one line per port,
so their requests go one at a time), and prints the device list as one JSON line.

The gateway side is this process: one ModbusPoller over every board with the elevator-board
profile's register map (as the service builds it), --interval between polls, a 1 s timeout,
uvloop as in `gridwatch run` (--loop asyncio to compare). Its observer records every poll's
schedule lag (how late the poll started against its tick) and latency, and counts failures by
reason. The handler takes each batch and returns a completed future: what is measured is the
poller, its lines and pymodbus (request, framing, decoding the registers into a reading), not
the ingest pipeline, the rules or the store behind it.

After --warmup seconds (connections being made) the measured window is --duration seconds:
polls done and polls/s against devices/interval, failures by reason, lag p50/p90/p99/max,
latency p50/p99, CPU per poll (this process's CPU time over the window / polls) and this
process's share of one core. The server processes' and the machine's CPU are printed too: a
saturated machine delays answers and wake-ups whatever the poller does. The exit status is 1
when p99 lag misses the target, a poll failed, or polls/s is off devices/interval by over 5 %.
"""

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from benchmarks.stats import percentile
from gridwatch.adapters.modbus import ModbusDevice, ModbusPoller, PolledReading, PollFailure
from gridwatch.domain.sensors import ModbusProtocol
from gridwatch.registry.catalog import device_profiles
from gridwatch.service.modbus import register_map
from gridwatch.simulators import ModbusDeviceServer, parse_scenario

TARGET_P99_LAG_S = 0.25
RATE_TOLERANCE = 0.05  # polls/s against devices/interval (edges of the window, not more)
PROFILE = "elevator-board"
HOST = "127.0.0.1"
TIMEOUT_S = 1.0
SENSOR_ID = "EL-{:05d}"
MAX_UNITS_PER_PORT = 247
SERVE_TIMEOUT_S = 300.0  # a server process listening on all its ports and printing them
STOP_TIMEOUT_S = 10.0
LIST_LIMIT = 64 * 1024 * 1024  # the device list is one JSON line, ~50 bytes a board
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The fleet processes run this module again, from the project root so `benchmarks` imports.
PROJECT_ROOT = Path(__file__).resolve().parents[1]


# --- the simulated fleet (child processes) ----------------------------------------------------


def fleet_scenario(first: int, count: int, interval_s: float) -> str:
    """Elevators `first`.. `first + count - 1`, their model ticks spread over the interval."""
    # All models waking at once would make the server late in one burst per interval, and
    # that lateness would be counted as the gateway's latency.
    lines = ["name: modbus_fleet", "devices:"]
    for index in range(first, first + count):
        phase = (index - first) * interval_s / count
        lines.append(
            f"  - {{id: {SENSOR_ID.format(index)}, kind: elevator, "
            f"interval_s: {interval_s}, phase_s: {phase:.6f}}}"
        )
    return "\n".join(lines) + "\n"


async def serve(first: int, count: int, interval_s: float, units_per_port: int) -> None:
    """Serve the boards until stdin closes or SIGTERM; the device list goes to stdout."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    scenario = parse_scenario(fleet_scenario(first, count, interval_s))
    shared = units_per_port > 1
    chunk = units_per_port if shared else count
    async with contextlib.AsyncExitStack() as stack:
        devices: list[dict[str, Any]] = []
        for start in range(0, count, chunk):
            part = scenario.model_copy(update={"devices": scenario.devices[start : start + chunk]})
            server = ModbusDeviceServer(part, host=HOST, port=0, shared_port=shared)
            await stack.enter_async_context(server)
            devices += [{"id": d.device_id, "port": d.port, "unit": d.unit} for d in server.devices]
        sys.stdout.write(json.dumps(devices) + "\n")
        sys.stdout.flush()
        # The parent closing our stdin (or dying) ends the run as surely as SIGTERM.
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        eof = asyncio.ensure_future(reader.read())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({eof, stopped}, return_when=asyncio.FIRST_COMPLETED)
        eof.cancel()
        stopped.cancel()


@dataclass
class ServerProcess:
    """One fleet process and the boards it serves."""

    process: asyncio.subprocess.Process
    devices: list[dict[str, Any]] = field(default_factory=list)


async def start_servers(args: argparse.Namespace, servers: list[ServerProcess]) -> None:
    """Start --servers fleet processes over an even split of the boards; wait for their lists.

    Each is added to `servers` as soon as it runs, so the caller stops it whatever happens.
    """
    share = math.ceil(args.devices / args.servers)
    for first in range(0, args.devices, share):
        count = min(share, args.devices - first)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.modbus_fleet",
            "--serve",
            f"--first={first + 1}",
            f"--devices={count}",
            f"--interval={args.interval}",
            f"--units-per-port={args.units_per_port}",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=LIST_LIMIT,
            cwd=PROJECT_ROOT,
        )
        servers.append(ServerProcess(process))
    for server in servers:
        assert server.process.stdout is not None  # piped above
        line = await asyncio.wait_for(server.process.stdout.readline(), SERVE_TIMEOUT_S)
        if not line:
            raise RuntimeError(f"fleet process {server.process.pid} exited before serving")
        server.devices = json.loads(line)


async def stop_servers(servers: Sequence[ServerProcess]) -> None:
    """Close each fleet process's stdin and wait; SIGKILL one that does not stop in time."""
    for server in servers:
        if server.process.stdin is not None:
            server.process.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            server.process.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            await asyncio.wait_for(server.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                server.process.kill()
            await server.process.wait()


# --- the gateway side (this process) ----------------------------------------------------------


class Recorder:
    """The poller's observer: every poll's lag and latency, failures by reason, in the window."""

    def __init__(self) -> None:
        self.measuring = False
        self.lags: list[float] = []
        self.latencies: list[float] = []
        self.failures: collections.Counter[str] = collections.Counter()
        self.warmup_failures: collections.Counter[str] = collections.Counter()
        self.readings = 0
        self.polled_ids: set[str] = set()

    # `sensor_id` is optional so this observer fits the protocol with and without it.
    def polled(self, *, latency_s: float, lag_s: float, sensor_id: str = "") -> None:
        """Record a good poll (only inside the window)."""
        if self.measuring:
            self.lags.append(lag_s)
            self.latencies.append(latency_s)
            if sensor_id:
                self.polled_ids.add(sensor_id)

    def failed(self, failure: PollFailure) -> None:
        """Count a failed poll by its reason."""
        target = self.failures if self.measuring else self.warmup_failures
        target[failure.reason.value] += 1

    async def handle(self, batch: Sequence[PolledReading]) -> Awaitable[object]:
        """Accept the batch; it is durable at once (no pipeline, no store)."""
        if self.measuring:
            self.readings += len(batch)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def poll_devices(servers: Sequence[ServerProcess], interval_s: float) -> list[ModbusDevice]:
    """The served boards as the service would poll them, with the shipped profile's map."""
    registers = register_map(device_profiles(None)[PROFILE])
    return [
        ModbusDevice(
            entry["id"],
            ModbusProtocol(
                type="modbus",
                host=HOST,
                port=entry["port"],
                unit=entry["unit"],
                profile=PROFILE,
                interval_s=interval_s,
                timeout_s=TIMEOUT_S,
            ),
            registers,
        )
        for server in servers
        for entry in server.devices
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (every thread), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state) of proc(5)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_ticks() -> tuple[int, int]:
    """Busy and total jiffies of all CPUs since boot (the first line of /proc/stat)."""
    numbers = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = numbers[3] + numbers[4]  # idle + iowait
    return sum(numbers) - idle, sum(numbers)


def raise_open_files(needed: int) -> None:
    """Raise the soft open-files limit to `needed` (up to the hard limit) if it is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        if limit < needed:
            print(f"warning: open files limited to {limit}, {needed} wanted")


@dataclass(frozen=True, slots=True)
class Window:
    """CPU counters over the measured window."""

    seconds: float
    gateway_cpu_s: float
    server_cpu_s: float
    machine_busy: float  # share of all CPUs busy, 0..1


async def measure(args: argparse.Namespace) -> int:
    """Run the fleet and the poller, measure, print; the exit status."""
    # A client socket per board here; a listener and an accepted socket per board per server.
    raise_open_files(args.devices + 256)
    started = time.monotonic()
    servers: list[ServerProcess] = []
    try:
        await start_servers(args, servers)
        pids = [server.process.pid for server in servers]
        devices = poll_devices(servers, args.interval)
        print(
            f"{len(devices)} elevator boards served by {len(servers)} process(es) "
            f"({_port_layout(args)}) in {time.monotonic() - started:.1f} s; "
            f"{os.cpu_count()} CPUs, loop {type(asyncio.get_running_loop()).__module__}"
        )
        recorder = Recorder()
        poller = ModbusPoller(handler=recorder.handle, observer=recorder)
        poller.update(devices)
        task = asyncio.create_task(poller.run(), name="poller")
        try:
            window = await _run_window(args, recorder, pids, task)
        finally:
            resisted = await stop_poller(task)
    finally:
        await stop_servers(servers)
    if resisted:
        print(
            f"shutdown: {len(resisted)} device task(s) went on polling after cancel() and "
            f"needed another ({', '.join(sorted(resisted)[:5])})"
        )
    return report(args, recorder, window)


async def stop_poller(task: asyncio.Task[None]) -> set[str]:
    """Cancel the poller and wait for it; the device tasks that had to be cancelled again.

    On Python 3.11, asyncio.wait_for returns the result instead of raising when it is
    cancelled just as the awaited request completes (CPython gh-86296): a device task then
    polls on, and the poller's TaskGroup waits for it forever.
    """
    task.cancel()
    resisted: set[str] = set()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while not task.done():
        await asyncio.wait({task}, timeout=0.5)
        if task.done():
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the poller did not stop within {STOP_TIMEOUT_S:g} s")
        for device_task in asyncio.all_tasks():
            if device_task.get_name().startswith("modbus-") and not device_task.done():
                resisted.add(device_task.get_name())
                device_task.cancel()
    if not task.cancelled() and (error := task.exception()) is not None:
        raise error
    return resisted


async def _run_window(
    args: argparse.Namespace, recorder: Recorder, pids: Sequence[int], task: asyncio.Task[None]
) -> Window:
    await asyncio.wait({task}, timeout=args.warmup)
    if task.done():
        task.result()  # the poller stopped on its own: raise what it raised
    recorder.measuring = True
    cpu0, wall0 = time.process_time(), time.monotonic()
    server0 = sum(cpu_seconds(pid) for pid in pids)
    busy0, total0 = machine_busy_ticks()
    await asyncio.wait({task}, timeout=args.duration)
    recorder.measuring = False
    cpu1, wall1 = time.process_time(), time.monotonic()
    server1 = sum(cpu_seconds(pid) for pid in pids)
    busy1, total1 = machine_busy_ticks()
    if task.done():
        task.result()
    return Window(
        seconds=wall1 - wall0,
        gateway_cpu_s=cpu1 - cpu0,
        server_cpu_s=server1 - server0,
        machine_busy=(busy1 - busy0) / max(1, total1 - total0),
    )


def _port_layout(args: argparse.Namespace) -> str:
    if args.units_per_port > 1:
        return f"{args.units_per_port} units per port"
    return "one port per board"


def report(args: argparse.Namespace, recorder: Recorder, window: Window) -> int:
    """Print the figures; 0 when p99 lag meets the target and no poll failed."""
    polls = len(recorder.lags)
    failed = sum(recorder.failures.values())
    expected = args.devices / args.interval
    lags, latencies = recorder.lags, recorder.latencies
    rate = polls / window.seconds
    ms = 1e3
    print(f"window {window.seconds:.1f} s after {args.warmup:g} s warm-up")
    print(
        f"polls: {polls} good, {failed} failed; {rate:.1f} polls/s of {expected:.1f} expected "
        f"({rate / expected:.3f}x); {recorder.readings} readings handed on"
    )
    early = sum(1 for lag in lags if lag < 0)
    if early:
        print(f"polls started before their tick (negative lag): {early}")
    if recorder.polled_ids:
        print(f"boards with a good poll in the window: {len(recorder.polled_ids)}")
    if recorder.failures:
        reasons = ", ".join(f"{reason} {n}" for reason, n in recorder.failures.most_common())
        print(f"failures by reason: {reasons}")
    if recorder.warmup_failures:
        reasons = ", ".join(f"{r} {n}" for r, n in recorder.warmup_failures.most_common())
        print(f"(during warm-up: {reasons})")
    p99_lag = percentile(lags, 0.99)
    print(
        f"schedule lag ms: p50 {percentile(lags, 0.5) * ms:.2f}  "
        f"p90 {percentile(lags, 0.9) * ms:.2f}  p99 {p99_lag * ms:.2f}  "
        f"max {max(lags, default=math.nan) * ms:.2f}"
    )
    print(
        f"poll latency ms: p50 {percentile(latencies, 0.5) * ms:.2f}  "
        f"p99 {percentile(latencies, 0.99) * ms:.2f}  "
        f"max {max(latencies, default=math.nan) * ms:.2f}"
    )
    per_poll_us = window.gateway_cpu_s / max(1, polls + failed) * 1e6
    print(
        f"gateway CPU: {per_poll_us:.0f} us per poll, {window.gateway_cpu_s / window.seconds:.2f} "
        f"of one core; fleet processes {window.server_cpu_s / window.seconds:.2f} core(s); "
        f"machine {window.machine_busy:.0%} busy ({os.cpu_count()} CPUs)"
    )
    ratio = p99_lag / TARGET_P99_LAG_S
    print(
        f"p99 lag {p99_lag * ms:.1f} ms (target < {TARGET_P99_LAG_S * ms:.0f} ms): "
        f"{ratio:.2f}x of the target"
    )
    # Polls well over devices/interval are polls repeated for one tick, not extra capacity.
    on_schedule = abs(rate / expected - 1) <= RATE_TOLERANCE
    if not on_schedule:
        print(f"polls/s is {rate / expected:.3f}x the schedule's (tolerance {RATE_TOLERANCE:.0%})")
    return 0 if ratio < 1 and not failed and on_schedule else 1


def main() -> None:
    """Parse the arguments; serve a share of the fleet (--serve) or run the benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=2_000)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (2 intervals)")
    parser.add_argument("--servers", type=int, default=1, help="fleet processes")
    parser.add_argument(
        "--units-per-port", type=int, default=1, help=f"boards per port, 1..{MAX_UNITS_PER_PORT}"
    )
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the gateway's loop"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.devices < 1 or args.servers < 1 or args.interval <= 0 or args.duration <= 0:
        parser.error("--devices, --servers, --interval and --duration must be positive")
    if not 1 <= args.units_per_port <= MAX_UNITS_PER_PORT:
        parser.error(f"--units-per-port must be 1..{MAX_UNITS_PER_PORT}")
    if args.warmup is None:
        args.warmup = 2 * args.interval
    if args.serve:
        raise_open_files(2 * args.devices + 256)
        uvloop.run(serve(args.first, args.devices, args.interval, args.units_per_port))
        return
    run = uvloop.run if args.loop == "uvloop" else asyncio.run
    sys.exit(run(measure(args)))


if __name__ == "__main__":
    main()
