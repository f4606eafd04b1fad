"""Cases: list with filters, and one case with its history."""

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from gridwatch.api.deps import PrincipalDep, SessionDep, permitted
from gridwatch.api.roles import Permission, allows
from gridwatch.cases import service
from gridwatch.cases.models import CaseRead, CaseStatus, CaseSummary
from gridwatch.domain import Severity

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])
READ = permitted(Permission.CASES_READ)


class CasePage(BaseModel):
    """One page of cases, newest first."""

    items: list[CaseSummary]
    total: int
    limit: int
    offset: int


@router.get("", **READ)
async def list_cases(
    session: SessionDep,
    status: CaseStatus | None = None,
    severity: Severity | None = None,
    grid: str | None = None,
    sensor_id: str | None = None,
    open: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    include_test: bool = False,
    queue: Literal["city", "maintenance", "all"] = "city",
    *,
    principal: PrincipalDep,
) -> CasePage:
    """Cases matching every given filter; `open=true` keeps the unclosed ones.

    `queue` picks city cases (default), maintenance cases (device health), or all.

    Test cases (raised by sensors in commissioning) are listed only with `include_test=true`,
    for installers and admins.
    """
    if include_test and not allows(principal.role, Permission.TEST_CASES_READ):
        raise HTTPException(403, f"role {principal.role} may not see test cases")
    case_filter = service.CaseFilter(
        status=status.value if status else None,
        severity=severity,
        grid=grid,
        sensor_id=sensor_id,
        open_only=open,
        include_test=include_test,
        maintenance={"city": False, "maintenance": True, "all": None}[queue],
    )
    cases, total = await service.list_cases(
        session=session, case_filter=case_filter, limit=limit, offset=offset
    )
    items = [CaseSummary.model_validate(case) for case in cases]
    return CasePage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{case_id}", **READ)
async def get_case(case_id: str, session: SessionDep, principal: PrincipalDep) -> CaseRead:
    """One case with its full history."""
    case = await service.get_case(session=session, case_id=case_id)
    hidden = (
        case is not None and case.drill and not allows(principal.role, Permission.TEST_CASES_READ)
    )
    if case is None or hidden:
        raise HTTPException(404, f"no case {case_id!r}")
    return CaseRead.model_validate(case)
