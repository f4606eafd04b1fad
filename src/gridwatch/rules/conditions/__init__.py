"""Condition evaluators: each condition model compiles to one Evaluator."""

from gridwatch.rules.conditions.base import (
    Evaluator,
    SensorContext,
    SeriesSpec,
    Slot,
    Verdict,
)
from gridwatch.rules.conditions.composite import CompositeEvaluator
from gridwatch.rules.conditions.events import MatchEvaluator, StateEvaluator
from gridwatch.rules.conditions.health import (
    ClockSkewEvaluator,
    DeadmanEvaluator,
    RangeEvaluator,
    StuckEvaluator,
)
from gridwatch.rules.conditions.threshold import RateEvaluator, ThresholdEvaluator
from gridwatch.rules.conditions.window import CountEvaluator, WindowEvaluator
from gridwatch.rules.models import (
    ClockSkewCondition,
    CompositeCondition,
    Condition,
    CountCondition,
    DeadmanCondition,
    DeviationCondition,
    MatchCondition,
    RangeCondition,
    RateCondition,
    StateCondition,
    StuckCondition,
    ThresholdCondition,
    WindowCondition,
)


def build_evaluator(condition: Condition) -> Evaluator:
    """The evaluator for a validated condition."""
    match condition:
        case ThresholdCondition() | DeviationCondition():
            return ThresholdEvaluator(condition)
        case RateCondition():
            return RateEvaluator(condition)
        case WindowCondition():
            return WindowEvaluator(condition)
        case CountCondition():
            return CountEvaluator(condition)
        case MatchCondition():
            return MatchEvaluator(condition)
        case StateCondition():
            return StateEvaluator(condition)
        case DeadmanCondition():
            return DeadmanEvaluator(condition)
        case StuckCondition():
            return StuckEvaluator(condition)
        case RangeCondition():
            return RangeEvaluator(condition)
        case ClockSkewCondition():
            return ClockSkewEvaluator(condition)
        case CompositeCondition():
            parts = [build_evaluator(part) for part in condition.conditions]
            return CompositeEvaluator(condition.type, parts, condition.severity)


__all__ = [
    "Evaluator",
    "SensorContext",
    "SeriesSpec",
    "Slot",
    "Verdict",
    "build_evaluator",
]
