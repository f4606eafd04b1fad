"""Pure rule engine: rule models, YAML loader and evaluators. No I/O beyond reading rule files."""

from gridwatch.rules.engine import RuleEngine
from gridwatch.rules.loader import (
    DEFAULT_PACK_DIR,
    RuleFileError,
    RulePack,
    load_pack,
    load_pack_dir,
    load_rule_files,
    load_rules_dir,
)
from gridwatch.rules.models import AppliesTo, MaintenanceWindow, Rule, ThresholdCondition
from gridwatch.rules.plan import check_overrides
from gridwatch.rules.state import SnapshotError

__all__ = [
    "DEFAULT_PACK_DIR",
    "AppliesTo",
    "MaintenanceWindow",
    "Rule",
    "RuleEngine",
    "RuleFileError",
    "RulePack",
    "SnapshotError",
    "ThresholdCondition",
    "check_overrides",
    "load_pack",
    "load_pack_dir",
    "load_rule_files",
    "load_rules_dir",
]
