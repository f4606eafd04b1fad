"""Cases: list with filters, and one case with its history."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from gridwatch.api.deps import Authorized, SessionDep
from gridwatch.cases import service
from gridwatch.cases.models import CaseRead, CaseStatus, CaseSummary
from gridwatch.domain import Severity

router = APIRouter(prefix="/api/v1/cases", tags=["cases"], dependencies=[Authorized])


class CasePage(BaseModel):
    """One page of cases, newest first."""

    items: list[CaseSummary]
    total: int
    limit: int
    offset: int


@router.get("")
async def list_cases(
    session: SessionDep,
    status: CaseStatus | None = None,
    severity: Severity | None = None,
    grid: str | None = None,
    sensor_id: str | None = None,
    open: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> CasePage:
    """Cases matching every given filter; `open=true` keeps the unclosed ones."""
    case_filter = service.CaseFilter(
        status=status.value if status else None,
        severity=severity,
        grid=grid,
        sensor_id=sensor_id,
        open_only=open,
    )
    cases, total = await service.list_cases(
        session=session, case_filter=case_filter, limit=limit, offset=offset
    )
    items = [CaseSummary.model_validate(case) for case in cases]
    return CasePage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{case_id}")
async def get_case(case_id: str, session: SessionDep) -> CaseRead:
    """One case with its full history."""
    case = await service.get_case(session=session, case_id=case_id)
    if case is None:
        raise HTTPException(404, f"no case {case_id!r}")
    return CaseRead.model_validate(case)
