"""The rules in force, and reloading them from their files without a restart."""

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from gridwatch.api.deps import ContextDep, permitted
from gridwatch.api.roles import Permission

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])


class RuleSummary(BaseModel):
    """One rule as the API lists it."""

    id: str
    title: str
    category: str
    condition: dict[str, Any]
    applies_to: dict[str, Any]


class RuleList(BaseModel):
    """The rules in force, in load order."""

    items: list[RuleSummary]


class Reloaded(BaseModel):
    """How many rules are in force after a reload."""

    rules: int


@router.get("", **permitted(Permission.RULES_READ))
async def list_rules(context: ContextDep) -> RuleList:
    """Every rule the engine evaluates now."""
    return RuleList(
        items=[
            RuleSummary(
                id=rule.id,
                title=rule.title,
                category=rule.category,
                condition=rule.condition.model_dump(mode="json"),
                applies_to=rule.applies_to.model_dump(mode="json"),
            )
            for rule in context.alarms.engine.rules
        ]
    )


@router.post("/reload", **permitted(Permission.RULES_WRITE))
async def reload_rules(context: ContextDep) -> Reloaded:
    """Load the rule files again; a file with an error is refused whole and the rules stay."""
    if context.reload_rules is None:
        raise HTTPException(503, "this instance has no rules runtime")
    report = await context.reload_rules()
    if not report.loaded:
        raise HTTPException(422, f"rule files refused, the running rules stay: {report.error}")
    return Reloaded(rules=report.rules)
