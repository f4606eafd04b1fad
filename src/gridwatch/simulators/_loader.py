"""Reading scenario YAML files, shipped or local, into validated `Scenario` objects."""

from importlib import resources
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import ValidationError

from gridwatch.simulators._errors import ScenarioError
from gridwatch.simulators._names import DeviceKind
from gridwatch.simulators._scenario import STEP_ACTIONS, Scenario

_SHIPPED = resources.files("gridwatch.simulators") / "scenarios"
_SUFFIXES = (".yaml", ".yml")
# Union tags pydantic puts in error locations after a list index; they add noise, not meaning.
_TAGS = STEP_ACTIONS | frozenset(get_args(DeviceKind))


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped with gridwatch (usable as `load_scenario(name)`)."""
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in _SHIPPED.iterdir()
        if entry.name.endswith(".yaml")
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario: a bare name ("demo") is a shipped one, anything else a YAML file path."""
    if isinstance(name_or_path, str) and _is_bare_name(name_or_path):
        if name_or_path not in shipped_scenarios():
            known = ", ".join(shipped_scenarios())
            raise ScenarioError(name_or_path, [f"no shipped scenario by that name ({known})"])
        text = (_SHIPPED / f"{name_or_path}.yaml").read_text(encoding="utf-8")
        return parse_scenario(text, source=f"scenarios/{name_or_path}.yaml", name=name_or_path)
    path = Path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(str(path), [f"cannot read the file: {err.strerror}"]) from err
    return parse_scenario(text, source=str(path), name=path.stem)


def parse_scenario(text: str, *, source: str = "<scenario>", name: str = "scenario") -> Scenario:
    """Parse and validate scenario YAML; `source` names the file in errors."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ScenarioError(source, [_yaml_problem(err)]) from err
    if not isinstance(raw, dict):
        raise ScenarioError(source, ["the top level must be a mapping with devices and timeline"])
    raw.setdefault("name", name)
    try:
        return Scenario.model_validate(raw)
    except ValidationError as err:
        problems = [
            line
            for error in err.errors()
            for line in _problem_lines(error["loc"], error["msg"], error["type"], raw)
        ]
        raise ScenarioError(source, problems) from err


def _is_bare_name(value: str) -> bool:
    return "/" not in value and "\\" not in value and not value.endswith(_SUFFIXES)


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}"


def _problem_lines(loc: tuple[int | str, ...], msg: str, kind: str, raw: Any) -> list[str]:
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    if not loc:
        # Cross-field checks already name their fields, one per line.
        return msg.splitlines()
    return [f"{_location(loc, raw)}: {line}" for line in msg.splitlines()]


def _location(loc: tuple[int | str, ...], raw: Any) -> str:
    text = ""
    node = raw
    previous_was_index = False
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                text += f" ({node['id']})"
            previous_was_index = True
            continue
        if previous_was_index and part in _TAGS:
            previous_was_index = False
            continue
        text += f".{part}" if text else part
        node = node.get(part) if isinstance(node, dict) else None
        previous_was_index = False
    return text
