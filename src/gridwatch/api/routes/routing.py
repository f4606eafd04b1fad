"""The routing table in force, and where a case would be dispatched (auto-dispatch)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from gridwatch.api.deps import ContextDep, permitted
from gridwatch.api.problems import PROBLEM_JSON, problem
from gridwatch.api.roles import Permission
from gridwatch.registry.grid import GridCodeError

router = APIRouter(prefix="/api/v1/routing", tags=["routing"])


class RouteAnswer(BaseModel):
    """Where a case of this category, place and owner goes, and why; `unit` null: by hand."""

    unit: str | None
    by_owner: bool = False
    explanation: str


@router.get("", **permitted(Permission.CASES_READ))
async def get_routing(context: ContextDep) -> Any:
    """The routing table in force (`GRIDWATCH_ROUTING_FILE`); `routes: []` when none is set."""
    table = context.case_policy.routing
    if table is None:
        return {"configured": False, "owners": {}, "routes": []}
    return {"configured": True} | table.model_dump(mode="json", exclude_none=True)


@router.get(
    "/route",
    **permitted(Permission.CASES_READ),
    response_model=RouteAnswer,
    responses={422: {"content": {PROBLEM_JSON: {}}, "description": "A parameter is not usable"}},
)
async def get_route(
    context: ContextDep,
    category: Annotated[str, Query(min_length=1, description="A case category, event:0401.")],
    grid: Annotated[str | None, Query(description="A grid code at any level.")] = None,
    owner: Annotated[str | None, Query(description="The sensor's asset owner.")] = None,
) -> Any:
    """Where auto-dispatch would send such a case, which entry decided it, or that none does."""
    try:
        found = context.case_policy.route(category=category, grid=grid, owner=owner)
    except GridCodeError as err:
        return problem(422, str(err), errors=[{"field": "query.grid", "reason": str(err)}])
    if found is None:
        return RouteAnswer(unit=None, explanation="no entry matches: dispatched by hand")
    return RouteAnswer(unit=found.unit, by_owner=found.by_owner, explanation=found.explain())
