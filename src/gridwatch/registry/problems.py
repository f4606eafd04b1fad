"""Registry errors that name the row (for imports), the field and the reason."""

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from gridwatch.domain.sensors import FieldError


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with the input."""

    field: str
    reason: str
    row: int | None = None

    def as_json(self) -> dict[str, object]:
        """The shape the API reports."""
        problem: dict[str, object] = {"field": self.field, "reason": self.reason}
        if self.row is not None:
            problem = {"row": self.row} | problem
        return problem


class RegistryError(Exception):
    """The request cannot be applied; nothing was changed."""

    status = 422

    def __init__(self, problems: Sequence[FieldProblem], summary: str | None = None) -> None:
        self.problems = list(problems)
        first = self.problems[0] if self.problems else None
        where = f"row {first.row}: " if first and first.row is not None else ""
        self.summary = summary or (
            f"{where}{first.field}: {first.reason}" if first else "invalid input"
        )
        if len(self.problems) > 1:
            self.summary += f" (and {len(self.problems) - 1} more)"
        super().__init__(self.summary)


class NotFoundError(RegistryError):
    """No such sensor (or grid unit)."""

    status = 404


class ConflictError(RegistryError):
    """The change is valid but not allowed in the current state."""

    status = 409


def problems_from_validation(err: ValidationError, *, row: int | None = None) -> list[FieldProblem]:
    """One FieldProblem per pydantic error, with dotted field paths as the input spells them."""
    problems = []
    for error in err.errors():
        # A tagged union adds its tag to the location ("protocol.modbus.port"); the input
        # has no such level.
        loc = [str(part) for part in error["loc"]]
        if loc[:1] == ["protocol"] and loc[1:2] in (["modbus"], ["mqtt"]):
            del loc[1]
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, FieldError):
            loc.append(cause.field)
            reason = cause.reason
        else:
            reason = error["msg"]
        problems.append(FieldProblem(field=".".join(loc) or "body", reason=reason, row=row))
    return problems
