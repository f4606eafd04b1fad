"""`python -m gridwatch.simulators`: run a scenario, record a live feed, or replay a recording."""

import argparse
import asyncio
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from gridwatch.simulators._errors import BrokerError, RecordingError, ScenarioError
from gridwatch.simulators._loader import load_scenario, shipped_scenarios
from gridwatch.simulators._mqtt import parse_mqtt_url
from gridwatch.simulators._recorder import record, replay
from gridwatch.simulators._runner import RunStats, run_scenario

EXIT_BROKER = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, do the one thing asked, print a summary; return the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG
        if args.verbose > 1
        else logging.INFO
        if args.verbose
        else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if args.list:
        return _list()
    try:
        parse_mqtt_url(args.mqtt_url)
        if args.scenario is not None:
            return _simulate(args)
        if args.record is not None:
            count = asyncio.run(record(args.mqtt_url, args.prefix, args.record, args.duration))
            _out(f"recorded {count} messages to {args.record}")
        else:
            count = asyncio.run(replay(args.replay, args.mqtt_url, args.speed))
            _out(f"replayed {count} messages from {args.replay}")
    except (ScenarioError, RecordingError, ValueError) as err:
        _err(str(err))
        return EXIT_USAGE
    except BrokerError as err:
        _err(str(err))
        return EXIT_BROKER
    except KeyboardInterrupt:
        _out("stopped")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    stats = RunStats()
    run = run_scenario(
        scenario,
        mqtt_url=args.mqtt_url,
        topic_prefix=args.prefix,
        speed=args.speed,
        duration_s=args.duration,
        seed=args.seed,
        stats=stats,
    )
    try:
        asyncio.run(run)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how an endless scenario ends; devices already went offline cleanly
    except BrokerError as err:
        _err(str(err))
        _out(f"scenario {scenario.name} (interrupted)\n{stats.summary()}")
        return EXIT_BROKER
    _out(f"scenario {scenario.name}\n{stats.summary()}")
    return 0


def _list() -> int:
    for name in shipped_scenarios():
        description = load_scenario(name).description.strip().splitlines()
        _out(f"{name:<20} {description[0] if description else ''}")
    return 0


def _speed(text: str) -> float:
    if text.lower() in ("full", "max", "inf"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a speed: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("speed must be > 0 (or 'full')")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gridwatch.simulators",
        description="Simulated gridwatch devices publishing the canonical MQTT payloads.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--scenario", metavar="NAME|PATH", help="shipped name or YAML file")
    what.add_argument("--record", metavar="FILE", type=Path, help="record {prefix}/# to FILE")
    what.add_argument("--replay", metavar="FILE", type=Path, help="replay a recording")
    what.add_argument("--list", action="store_true", help="list the shipped scenarios")
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883", help="mqtt:// or mqtts://")
    parser.add_argument("--speed", type=_speed, default=1.0, help="1, 10, 100 … or 'full'")
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of scenario time (for --record: wall seconds); default: scenario's own",
    )
    parser.add_argument("--prefix", default="gridwatch", help="MQTT topic prefix")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the device noise")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    return parser


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(f"error: {text}\n")


if __name__ == "__main__":
    raise SystemExit(main())
