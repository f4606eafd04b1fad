"""Load rule files; a file with any error is rejected whole with the file, rule and field named."""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gridwatch.rules.models import Rule

DEFAULT_PACK_DIR = Path(__file__).parent / "pack"


class RuleFileError(ValueError):
    """A rule file that cannot be used, with where and why."""

    def __init__(self, path: Path, reason: str, *, rule_id: str | None = None) -> None:
        self.path = path
        self.rule_id = rule_id
        self.reason = reason
        where = f"{path}" + (f", rule {rule_id!r}" if rule_id else "")
        super().__init__(f"{where}: {reason}")


def load_rules_dir(directory: Path) -> list[Rule]:
    """Every rule in the directory's *.yaml files, in file-name order."""
    if not directory.is_dir():
        raise RuleFileError(directory, "is not a directory")
    return load_rule_files(sorted(directory.glob("*.yaml")))


def load_rule_files(paths: Iterable[Path]) -> list[Rule]:
    """Rules from the files, refusing duplicate ids across files."""
    rules: list[Rule] = []
    seen: dict[str, Path] = {}
    for path in paths:
        for rule in _load_file(path):
            if rule.id in seen:
                raise RuleFileError(path, f"duplicate id, also in {seen[rule.id]}", rule_id=rule.id)
            seen[rule.id] = path
            rules.append(rule)
    return rules


def _load_file(path: Path) -> list[Rule]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RuleFileError(path, f"cannot be read ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise RuleFileError(path, f"is not valid YAML ({err})") from err
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise RuleFileError(path, "must be a mapping with a 'rules' list")
    return [_parse_rule(path, index, raw) for index, raw in enumerate(document["rules"])]


def _parse_rule(path: Path, index: int, raw: Any) -> Rule:
    rule_id = raw.get("id") if isinstance(raw, dict) else None
    label = str(rule_id) if rule_id else f"#{index + 1}"
    try:
        return Rule.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "rule"
        raise RuleFileError(path, f"{field}: {first['msg']}", rule_id=label) from err
