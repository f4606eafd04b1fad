"""Cases: list with filters, one case with its history, manual reports, and transitions.

Writes need `If-Match` with the version the caller read (the case's `ETag`): without it the
answer is 428, with a stale one 412, and nothing changes. An ETag is the strong `"<version>"`;
a weak `W/"<version>"` is accepted too, since proxies weaken ETags they pass on.
"""

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gridwatch.api.deps import ContextDep, PrincipalDep, SessionDep, permitted
from gridwatch.api.keys import Principal
from gridwatch.api.problems import PROBLEM_JSON, problem
from gridwatch.api.roles import Permission, action_permission, allows
from gridwatch.cases import service, transitions
from gridwatch.cases.errors import CaseNotFoundError, InvalidRequestError, VersionMismatchError
from gridwatch.cases.lifecycle import Action, TransitionRefusedError
from gridwatch.cases.models import CaseRead, CaseStatus, CaseSummary
from gridwatch.cases.requests import CaseReport, TransitionRequest
from gridwatch.domain import Severity

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])
READ = permitted(Permission.CASES_READ)
REPORT = permitted(Permission.CASES_REPORT)
TRANSITION = permitted(Permission.CASES_TRANSITION)
_ETAG = re.compile(r'^(?:W/)?"(\d{1,18})"$')
_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}


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
    if include_test and not _sees_tests(principal):
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


@router.post("", status_code=201, **REPORT)
async def report_case(
    report: CaseReport,
    session: SessionDep,
    principal: PrincipalDep,
    response: Response,
    context: ContextDep,
) -> CaseRead:
    """Report a case by hand (a patrol's or a citizen's); it enters the loop as reported.

    Where the routing table has a route for its category and grid, it is dispatched at once.
    """
    async with session.begin():
        case = await transitions.report_case(
            session=session,
            report=report,
            actor=_actor(principal),
            at=datetime.now(UTC),
            policy=context.case_policy,
        )
    context.events_committed()  # the relay and the pull queue, now rather than at their poll
    response.headers["Location"] = f"/api/v1/cases/{case.id}"
    response.headers["ETag"] = etag(case.version)
    return CaseRead.model_validate(case)


@router.get("/{case_id}", **READ)
async def get_case(
    case_id: str, session: SessionDep, principal: PrincipalDep, response: Response
) -> CaseRead:
    """One case with its full history; its `ETag` is the version to send back in `If-Match`."""
    case = await service.get_case(session=session, case_id=case_id)
    if case is None or (case.drill and not _sees_tests(principal)):
        raise HTTPException(404, f"no case {case_id!r}")
    response.headers["ETag"] = etag(case.version)
    return CaseRead.model_validate(case)


@router.post(
    "/{case_id}/transitions",
    dependencies=TRANSITION["dependencies"],
    openapi_extra=TRANSITION["openapi_extra"]
    | {
        "x-action-permissions": {action.value: action_permission(action).value for action in Action}
    },
    response_model=CaseRead,
    responses={
        400: _PROBLEM | {"description": "If-Match is not a version ETag"},
        404: _PROBLEM,
        409: _PROBLEM | {"description": "Not allowed in the case's state; names the allowed"},
        412: _PROBLEM | {"description": "The case changed since the If-Match version"},
        422: _PROBLEM,
        428: _PROBLEM | {"description": "If-Match is required"},
    },
)
async def transition_case(
    case_id: str,
    request: TransitionRequest,
    session: SessionDep,
    principal: PrincipalDep,
    response: Response,
    context: ContextDep,
    if_match: Annotated[str | None, Header(description='The version read: "3" or W/"3".')] = None,
) -> Any:
    """Move the case through the loop; the role needs the action's own permission too.

    The route's `x-permission` admits officers and dispatchers; `x-action-permissions` says
    which action needs which permission, checked once the body names the action.
    """
    permission = action_permission(request.action)
    if not allows(principal.role, permission):
        raise HTTPException(
            403, f"role {principal.role} may not {request.action} (needs {permission})"
        )
    if if_match is None:
        return problem(428, "send If-Match with the case's ETag (its version) to change it")
    versions = parse_if_match(if_match)
    if versions is None:
        return problem(400, f'If-Match must be version ETags such as "3", not {if_match!r}')
    try:
        async with session.begin():
            case = await transitions.transition(
                session=session,
                case_id=case_id,
                versions=versions,
                request=request,
                actor=_actor(principal),
                at=datetime.now(UTC),
                include_test=_sees_tests(principal),
                policy=context.case_policy,
            )
    except CaseNotFoundError as err:
        return problem(404, str(err))
    except VersionMismatchError as err:
        stale = problem(412, str(err), current_version=err.current)
        if err.current is not None:
            stale.headers["ETag"] = etag(err.current)
        return stale
    except TransitionRefusedError as err:
        return _refused(err)
    except InvalidRequestError as err:
        errors = [
            {"field": field.value, "reason": reason} for field, reason in err.problems.items()
        ]
        return problem(422, str(err), errors=errors)
    context.events_committed()
    response.headers["ETag"] = etag(case.version)
    return CaseRead.model_validate(case)


def write_preconditions(if_match: str | None, *, what: str) -> frozenset[int] | JSONResponse | None:
    """The versions a write of `what` may change (None: `*`, any), or the header's problem."""
    if if_match is None:
        return problem(428, f"send If-Match with {what}'s ETag (its version), or *")
    if if_match.strip() == "*":
        return None
    versions = parse_if_match(if_match)
    if versions is None:
        return problem(400, f'If-Match must be version ETags such as "3" or *, not {if_match!r}')
    return versions


def etag(version: int) -> str:
    """The ETag of a case at `version`."""
    return f'"{version}"'


def parse_if_match(header: str) -> frozenset[int] | None:
    """The versions an If-Match names (`"3"`, `W/"3"`, or a list of them); None if malformed."""
    versions = set()
    for tag in header.split(","):
        matched = _ETAG.match(tag.strip())
        if matched is None:
            return None
        versions.add(int(matched.group(1)))
    return frozenset(versions)


def _refused(err: TransitionRefusedError) -> JSONResponse:
    extra: dict[str, Any] = {
        "state": err.state.value,
        "action": err.action.value,
        "allowed": [action.value for action in err.allowed],
    }
    if err.reason is not None:
        extra["reason"] = err.reason
    return problem(409, str(err), **extra)


def _actor(principal: Principal) -> transitions.Actor:
    return transitions.Actor(id=principal.key_id, name=principal.name)


def _sees_tests(principal: Principal) -> bool:
    return allows(principal.role, Permission.TEST_CASES_READ)
