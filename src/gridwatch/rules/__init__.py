"""Pure rule engine: rule models, YAML loader and evaluators. No I/O beyond reading rule files."""

from gridwatch.rules.engine import RuleEngine
from gridwatch.rules.loader import DEFAULT_PACK_DIR, RuleFileError, load_rule_files, load_rules_dir
from gridwatch.rules.models import AppliesTo, Rule, ThresholdCondition

__all__ = [
    "DEFAULT_PACK_DIR",
    "AppliesTo",
    "Rule",
    "RuleEngine",
    "RuleFileError",
    "ThresholdCondition",
    "load_rule_files",
    "load_rules_dir",
]
