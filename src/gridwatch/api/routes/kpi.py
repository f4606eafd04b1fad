"""KPIs: evaluation of the closed loop over a period, by grid level, unit, category or kind."""

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from gridwatch.api.deps import ContextDep, permitted
from gridwatch.api.problems import PROBLEM_JSON, problem
from gridwatch.api.roles import Permission
from gridwatch.cases import kpi

router = APIRouter(prefix="/api/v1/kpi", tags=["kpi"])
# A year, leap day included: a wider query is a data export, not a KPI.
MAX_SPAN = timedelta(days=366)
_QUEUES: dict[str, bool | None] = {"city": False, "maintenance": True, "all": None}


@router.get(
    "",
    **permitted(Permission.KPI_READ),
    response_model=kpi.KpiReport,
    responses={422: {"content": {PROBLEM_JSON: {}}, "description": "A parameter is not usable"}},
)
async def get_kpi(
    context: ContextDep,
    start: Annotated[
        AwareDatetime, Query(alias="from", description="Reported at or after, with an offset.")
    ],
    end: Annotated[
        AwareDatetime, Query(alias="to", description="Reported before, with an offset.")
    ],
    group_by: kpi.GroupBy | None = None,
    queue: Literal["city", "maintenance", "all"] = "city",
    top: Annotated[int, Query(ge=0, le=500, description="How many hotspots.")] = 20,
) -> Any:
    """KPIs of the cases reported in [from, to), in total and per `group_by` key, with hotspots.

    Drill and test cases never count. The formulas are in the README ("KPIs").
    """
    if end <= start:
        return _bad("to", "must be after from")
    if end - start > MAX_SPAN:
        return _bad("to", f"at most {MAX_SPAN.days} days after from")
    query = kpi.KpiQuery(
        start=start, end=end, group_by=group_by, maintenance=_QUEUES[queue], top=top
    )
    return await kpi.report(sessions=context.sessions, query=query)


def _bad(parameter: str, reason: str) -> Any:
    field = f"query.{parameter}"
    return problem(422, f"{field}: {reason}", errors=[{"field": field, "reason": reason}])
