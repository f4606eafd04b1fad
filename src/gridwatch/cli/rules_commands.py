"""Tools for people who write rules: validate files, and replay a feed through them offline."""

from pathlib import Path
from typing import Annotated

import typer

from gridwatch.cli.app import app, console, errors, user_errors
from gridwatch.rules import DEFAULT_PACK_DIR
from gridwatch.rules.feeds import load_sensors
from gridwatch.rules.replay import check_rule_files, format_alarms, replay

rules_app = typer.Typer(help="Check rule files and test them against recorded feeds.")
app.add_typer(rules_app, name="rules")

FEEDS_DIR = DEFAULT_PACK_DIR.parent / "feeds"


def _rule_paths(paths: list[Path]) -> list[Path]:
    # A folder stands for its *.yaml files, in name order, as the service loads them.
    return [
        file
        for path in paths
        for file in (sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    ]


@rules_app.command("check")
def check(
    paths: Annotated[list[Path], typer.Argument(help="Rule files or folders.", exists=True)],
) -> None:
    """Validate rule files, alone and together; exit 2 if any is refused."""
    result = check_rule_files(_rule_paths(paths))
    for line in result.lines():
        (console if "ERROR" not in line else errors).print(line, highlight=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(2)


@rules_app.command("test")
def replay_command(
    feed: Annotated[
        Path, typer.Option(help="JSON lines of readings (or a recording).", exists=True)
    ],
    rules: Annotated[
        list[Path] | None, typer.Option(help="Rule files or folders (default: the shipped pack).")
    ] = None,
    sensors: Annotated[
        Path | None, typer.Option(help="Sensors YAML (default: sensors.yaml beside the feed).")
    ] = None,
    repeats: Annotated[bool, typer.Option(help="Also print repeated alarms.")] = False,
) -> None:
    """Replay a feed through the rules offline and print the alarms with their times."""
    result = check_rule_files(_rule_paths(rules or [DEFAULT_PACK_DIR]))
    if result.pack is None:
        for line in result.lines():
            errors.print(line, highlight=False)
        raise typer.Exit(2)
    sensors_file = sensors or feed.with_name("sensors.yaml")
    with user_errors():
        outcome = replay(result.pack, load_sensors(sensors_file), feed)
    console.print(format_alarms(outcome.alarms, repeats=repeats), highlight=False, soft_wrap=True)
    console.print(
        f"{outcome.readings} readings, {len(outcome.alarms)} alarm events"
        + (
            f"; unknown sensors: {sorted(outcome.unknown_sensors)}"
            if outcome.unknown_sensors
            else ""
        )
    )
