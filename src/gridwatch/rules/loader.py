"""Load rule files; a file with any error is rejected whole with the file, rule and field named."""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gridwatch.rules.models import MaintenanceWindow, Rule

DEFAULT_PACK_DIR = Path(__file__).parent / "pack"
_M = TypeVar("_M", bound=BaseModel)
_TOP_LEVEL_KEYS = frozenset({"rules", "maintenance_windows"})
# Discriminator tags pydantic puts into error locations; they name no field of the file.
_CONDITION_TAGS = frozenset(
    {
        "threshold",
        "deviation",
        "rate",
        "window",
        "count",
        "match",
        "state",
        "deadman",
        "stuck",
        "range",
        "clock_skew",
        "all",
        "any",
    }
)


class RuleFileError(ValueError):
    """A rule file that cannot be used, with where and why."""

    def __init__(self, path: Path, reason: str, *, rule_id: str | None = None) -> None:
        self.path = path
        self.rule_id = rule_id
        self.reason = reason
        where = f"{path}" + (f", rule {rule_id!r}" if rule_id else "")
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True, slots=True)
class RulePack:
    """Every rule of a set of files, with the scheduled maintenance windows they declare."""

    rules: tuple[Rule, ...]
    maintenance_windows: tuple[MaintenanceWindow, ...] = ()


def load_rules_dir(directory: Path) -> list[Rule]:
    """Every rule in the directory's *.yaml files, in file-name order."""
    return list(load_pack_dir(directory).rules)


def load_rule_files(paths: Iterable[Path]) -> list[Rule]:
    """Rules from the files, refusing duplicate ids across files."""
    return list(load_pack(paths).rules)


def load_pack_dir(directory: Path) -> RulePack:
    """The pack made of the directory's *.yaml files, in file-name order."""
    if not directory.is_dir():
        raise RuleFileError(directory, "is not a directory")
    return load_pack(sorted(directory.glob("*.yaml")))


def load_pack(paths: Iterable[Path], *, check_references: bool = True) -> RulePack:
    """Rules and maintenance windows from the files, checked across files.

    `check_references=False` skips checking that inhibited rules exist (a file checked on its
    own may name rules of another file).
    """
    rules: list[Rule] = []
    windows: list[MaintenanceWindow] = []
    seen: dict[str, Path] = {}
    for path in paths:
        file_rules, file_windows = _load_file(path)
        for rule in file_rules:
            if rule.id in seen:
                raise RuleFileError(path, f"duplicate id, also in {seen[rule.id]}", rule_id=rule.id)
            seen[rule.id] = path
            rules.append(rule)
        windows.extend(file_windows)
    if check_references:
        _check_inhibitions(rules, seen)
    _check_case_groups(rules, seen)
    return RulePack(rules=tuple(rules), maintenance_windows=tuple(windows))


def _check_case_groups(rules: list[Rule], where: dict[str, Path]) -> None:
    # One case has one category and one queue: rules folded into it must agree on both.
    first: dict[str, Rule] = {}
    for rule in rules:
        if rule.case_group is None:
            continue
        other = first.setdefault(rule.case_group, rule)
        if (other.category, other.maintenance) != (rule.category, rule.maintenance):
            raise RuleFileError(
                where[rule.id],
                f"case_group {rule.case_group!r}: category {rule.category!r} differs from "
                f"{other.category!r} of rule {other.id!r} in the same group",
                rule_id=rule.id,
            )


def _check_inhibitions(rules: list[Rule], where: dict[str, Path]) -> None:
    targets = {rule.id: rule.inhibits.rules for rule in rules if rule.inhibits is not None}
    for source, inhibited in targets.items():
        unknown = sorted(inhibited - where.keys())
        if unknown:
            raise RuleFileError(
                where[source], f"inhibits.rules: unknown rule ids {unknown}", rule_id=source
            )
    # Two rules inhibiting each other would silence both while both are active.
    for source in targets:
        stack, visited = [source], set()
        while stack:
            current = stack.pop()
            for target in targets.get(current, ()):
                if target == source:
                    raise RuleFileError(
                        where[source], "inhibits.rules: inhibition cycle", rule_id=source
                    )
                if target not in visited:
                    visited.add(target)
                    stack.append(target)


def _load_file(path: Path) -> tuple[list[Rule], list[MaintenanceWindow]]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RuleFileError(path, f"cannot be read ({err.strerror})") from err
    except (yaml.YAMLError, ValueError) as err:
        # PyYAML raises a bare ValueError for an impossible date such as 2026-13-01.
        raise RuleFileError(path, f"is not valid YAML ({err})") from err
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise RuleFileError(path, "must be a mapping with a 'rules' list")
    unknown = sorted(set(document) - _TOP_LEVEL_KEYS)
    if unknown:
        raise RuleFileError(path, f"unknown top-level keys {unknown}")
    rules = [_parse(Rule, path, "rule", index, raw) for index, raw in enumerate(document["rules"])]
    raw_windows = document.get("maintenance_windows")
    raw_windows = [] if raw_windows is None else raw_windows
    if not isinstance(raw_windows, list):
        raise RuleFileError(path, "maintenance_windows must be a list")
    windows = [
        _parse(MaintenanceWindow, path, "maintenance window", index, raw)
        for index, raw in enumerate(raw_windows)
    ]
    return rules, windows


def _parse(model: type[_M], path: Path, what: str, index: int, raw: Any) -> _M:
    rule_id = raw.get("id") if isinstance(raw, dict) else None
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        reason = f"{error_location(first)}: {first['msg']}"
        if what != "rule":
            raise RuleFileError(path, f"{what} #{index + 1}: {reason}") from err
        label = str(rule_id) if rule_id else f"#{index + 1}"
        raise RuleFileError(path, reason, rule_id=label) from err


def error_location(error: Any) -> str:
    """A pydantic error's location as the dotted path a rule author wrote, tags removed."""
    parts: list[str] = []
    for part in error["loc"]:
        # Pydantic inserts the union tag after the condition key: condition.threshold.field.
        after_condition = parts[-1:] == ["condition"] or (
            len(parts) >= 2 and parts[-1].isdigit() and parts[-2] == "conditions"
        )
        if part in _CONDITION_TAGS and after_condition:
            continue
        parts.append(str(part))
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        parts.append("type")
    return ".".join(parts) or "entry"
