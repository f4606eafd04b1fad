"""What people send to change cases: a transition of the loop, and a manual report."""

from typing import Annotated, Self

from pydantic import AnyUrl, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from gridwatch.cases.lifecycle import Action, Input
from gridwatch.domain import Location, Severity
from gridwatch.domain.sensors import GridCode

Note = Annotated[str, Field(max_length=4000)]
EvidenceLinks = Annotated[
    list[AnyUrl],
    Field(max_length=20, description="Links to photos, videos or documents (at most 20)."),
]


class TransitionRequest(BaseModel):
    """One action on a case; which fields an action needs is the state machine's table."""

    model_config = ConfigDict(extra="forbid")

    action: Action
    note: Note = ""
    unit: str | None = Field(
        default=None, min_length=1, max_length=64, description="The responsible unit (dispatch)."
    )
    evidence: EvidenceLinks = Field(default_factory=list)
    due_at: AwareDatetime | None = Field(
        default=None, description="The deadline (dispatch), or the one asked for (postpone)."
    )
    score: int | None = Field(default=None, ge=1, le=5, description="Evaluation, 1 to 5.")
    override: bool = Field(
        default=False, description="Verify a sensor case whose alarm is still active (with a note)."
    )
    approved: bool | None = Field(
        default=None, description="approve_postpone: false denies the postponement (with a note)."
    )

    def given(self) -> frozenset[Input]:
        """The inputs that carry a value: a blank note, no links or a false override do not."""
        values = {
            Input.NOTE: bool(self.note.strip()),
            Input.UNIT: self.unit is not None,
            Input.EVIDENCE: bool(self.evidence),
            Input.DUE_AT: self.due_at is not None,
            Input.SCORE: self.score is not None,
            Input.OVERRIDE: self.override,
            Input.APPROVED: self.approved is not None,
        }
        return frozenset(field for field, present in values.items() if present)


class CaseReport(BaseModel):
    """A case reported by a person: where (a grid unit, a location or both), what, how bad."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(min_length=1, max_length=32, examples=["event:0102"])
    title: str = Field(min_length=1, max_length=300)
    description: Note = ""
    severity: Severity = Severity.BLUE
    grid: GridCode | None = None
    location: Location | None = None
    evidence: EvidenceLinks = Field(default_factory=list)

    @model_validator(mode="after")
    def _somewhere(self) -> Self:
        if self.grid is None and self.location is None:
            raise ValueError("give the grid unit, the location or both")
        return self
