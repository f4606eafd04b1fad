"""Building blocks shared by rule models: durations, predicates, value sources, level tables."""

import itertools
import math
import re
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from gridwatch.domain import Severity

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(raw: Any) -> Any:
    """Seconds from a number or a string such as '90s', '10m', '3h', '1.5h', '1d'."""
    if isinstance(raw, bool):
        return raw  # let pydantic refuse it with its own message
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        match = _DURATION_RE.match(raw)
        if match is None:
            raise ValueError(f"{raw!r} is not a duration (use e.g. 90s, 10m, 3h, 1d)")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return raw


def format_duration(seconds: float) -> str:
    """The shortest of '3h', '10m', '90s' that names `seconds` exactly."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and math.isclose(seconds % size, 0, abs_tol=1e-9):
            return f"{seconds / size:.10g}{unit}"
    return f"{seconds:.10g}s"


# A positive duration in seconds, written as a number or with a unit.
Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0, allow_inf_nan=False)]
# Zero allowed: "for: 0" means at once.
Hold = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, allow_inf_nan=False)]
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr | None


class Model(BaseModel):
    """Frozen and strict about unknown keys, so a typo in a rule file is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# field -> one allowed value or a list of them; every field must match. `null` matches a
# missing field.
Predicate = dict[Annotated[str, Field(min_length=1)], Scalar | list[Scalar]]


def compile_predicate(predicate: Predicate | None) -> tuple[tuple[str, frozenset[Any]], ...]:
    """The predicate as (field, allowed values) pairs for fast matching."""
    if not predicate:
        return ()
    return tuple(
        (name, frozenset(allowed if isinstance(allowed, list) else [allowed]))
        for name, allowed in predicate.items()
    )


class DeviationSource(Model):
    """Distance of a vector of fields from the sensor's calibration baseline."""

    fields: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=3)
    baselines: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=3)
    combine: Literal["magnitude", "max_abs"] = "magnitude"

    @model_validator(mode="after")
    def _check_pairs(self) -> Self:
        if len(self.fields) != len(self.baselines):
            raise ValueError("fields and baselines must have the same length")
        return self


class SourceMixin(Model):
    """A numeric value taken from a reading: a plain field, or a deviation from baseline."""

    field: str | None = Field(default=None, min_length=1)
    deviation: DeviationSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.field is None) == (self.deviation is None):
            raise ValueError("give exactly one of 'field' or 'deviation'")
        return self

    @property
    def source_name(self) -> str:
        """What the value is called in titles and evidence."""
        if self.deviation is not None:
            return "deviation(" + ",".join(self.deviation.fields) + ")"
        assert self.field is not None
        return self.field


class LevelsMixin(Model):
    """Per-severity limits with a separate clear limit on the safe side (hysteresis)."""

    direction: Literal["above", "below"] = "above"
    levels: dict[Severity, float] = Field(min_length=1)
    clear: float

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        ordered = [self.levels[s] for s in sorted(self.levels)]
        sign = 1 if self.direction == "above" else -1
        if any(sign * (b - a) <= 0 for a, b in itertools.pairwise(ordered)):
            raise ValueError(
                f"levels must grow more severe in the '{self.direction}' direction: {ordered}"
            )
        # Hysteresis: the clear point must lie on the safe side of the lowest level,
        # otherwise a value between the two would raise and clear on alternate readings.
        if sign * (ordered[0] - self.clear) <= 0:
            raise ValueError(
                f"clear ({self.clear}) must be on the safe side of the lowest level "
                f"({ordered[0]}) for direction '{self.direction}'"
            )
        return self
