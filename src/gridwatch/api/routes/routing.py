"""The routing table (auto-dispatch): read it, replace it, drop it, and where a case would go.

The table in force is the one stored through this API, else `GRIDWATCH_ROUTING_FILE`'s, else
none. It lives in the case policy's `RoutingInForce`, which every case path reads: a change
here routes the next case opened in this process, and other processes take it from the
database within a poll. Changes need `If-Match` with the version read (the `ETag`), or `*` to
write over whatever is stored: without it 428, with a stale one 412, and nothing changes.
"""

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from gridwatch.api.context import ApiContext
from gridwatch.api.deps import ContextDep, PrincipalDep, SessionDep, permitted
from gridwatch.api.problems import (
    DATABASE_UNAVAILABLE,
    PROBLEM_JSON,
    database_unavailable,
    problem,
)
from gridwatch.api.roles import Permission
from gridwatch.api.routes.cases import etag, write_preconditions
from gridwatch.cases import routing_store
from gridwatch.cases.routing import (
    RouteEntry,
    RoutingError,
    RoutingSource,
    RoutingState,
    RoutingTable,
    build_routing,
)
from gridwatch.registry.grid import GridCodeError

router = APIRouter(prefix="/api/v1/routing", tags=["routing"])
WRITE = permitted(Permission.ROUTING_WRITE)
log = logging.getLogger("gridwatch.routing")

# What GET adds to the table; accepted back in a PUT and ignored, so a GET can be edited and
# sent back as it is.
_READ_ONLY = ("source", "configured", "version", "updated_at", "updated_by")
_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _PROBLEM | {"description": "If-Match is not a version ETag or *"},
    412: _PROBLEM | {"description": "The table changed since the If-Match version"},
    428: _PROBLEM | {"description": "If-Match is required"},
    503: _PROBLEM | {"description": "The database is unavailable; nothing changed"},
}


class RoutingRead(BaseModel):
    """The table in force, where it comes from, and the stored version (also the `ETag`)."""

    source: RoutingSource = Field(
        description="api: stored through the API; file: GRIDWATCH_ROUTING_FILE; none"
    )
    configured: bool = Field(description="Whether any table is in force")
    version: int = Field(description="Changes made through the API so far; If-Match takes it")
    updated_at: datetime | None = Field(None, description="The last change through the API")
    updated_by: str | None = Field(None, description="Who made it (an API key id, cli:user)")
    owners: dict[str, str]
    routes: tuple[RouteEntry, ...]


class RouteAnswer(BaseModel):
    """Where a case of this category, place and owner goes, and why; `unit` null: by hand."""

    unit: str | None
    by_owner: bool = False
    explanation: str


def _body_schema() -> dict[str, Any]:
    # The body is validated by RoutingTable itself (so every error names its entry and field);
    # OpenAPI gets the model's schema, inlined, plus the read-only fields of a GET.
    schema = RoutingTable.model_json_schema()
    entry = schema.pop("$defs")["RouteEntry"]
    schema["properties"]["routes"]["items"] = entry
    schema["properties"] |= {name: {"readOnly": True} for name in _READ_ONLY}
    schema["required"] = ["routes"]
    return {"required": True, "content": {"application/json": {"schema": schema}}}


@router.get("", **permitted(Permission.CASES_READ), response_model_exclude_none=True)
async def get_routing(context: ContextDep, response: Response) -> RoutingRead:
    """The table in force and its `ETag`; `source` says whether the API, the file or nothing."""
    routing = context.case_policy.routing
    try:
        async with context.sessions() as session:
            # Another process may have changed it since the last poll: the ETag must be current.
            await routing_store.refresh(session=session, routing=routing)
    except DATABASE_UNAVAILABLE as err:
        log.warning("routing table not refreshed, showing the one in force: %s", err)
    except RoutingError as err:
        # Named, not a traceback: written by a gridwatch whose checks differ from ours.
        log.error("stored routing table refused, the one in force stays: %s", err)  # noqa: TRY400
    return _answer(routing.state, response)


@router.put(
    "",
    dependencies=WRITE["dependencies"],
    openapi_extra=WRITE["openapi_extra"] | {"requestBody": _body_schema()},
    response_model=RoutingRead,
    response_model_exclude_none=True,
    responses=_WRITE_RESPONSES | {422: _PROBLEM | {"description": "Names each field and why"}},
)
async def put_routing(
    document: Annotated[dict[str, Any], Body()],
    context: ContextDep,
    session: SessionDep,
    principal: PrincipalDep,
    response: Response,
    if_match: Annotated[str | None, Header(description='The version read: "3", or *.')] = None,
) -> Any:
    """Replace the whole table (`owners`, `routes`); in force at once, and kept over restarts.

    The table is checked whole, as the routing file is: a 422 names every field and why, and
    nothing changes.
    """
    versions = write_preconditions(if_match, what="the routing table")
    if isinstance(versions, JSONResponse):
        return versions
    fields = {key: value for key, value in document.items() if key not in _READ_ONLY}
    try:
        table = build_routing(fields, source="body")
    except RoutingError as err:
        errors = [{"field": p.path or "body", "reason": p.reason} for p in err.problems]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem(422, detail, errors=errors)
    return await _write(context, session, principal.key_id, table, versions, response)


@router.delete(
    "",
    **WRITE,
    response_model=RoutingRead,
    response_model_exclude_none=True,
    responses=_WRITE_RESPONSES,
)
async def delete_routing(
    context: ContextDep,
    session: SessionDep,
    principal: PrincipalDep,
    response: Response,
    if_match: Annotated[str | None, Header(description='The version read: "3", or *.')] = None,
) -> Any:
    """Drop the stored table: the routing file's is in force again (or none); answers with it."""
    versions = write_preconditions(if_match, what="the routing table")
    if isinstance(versions, JSONResponse):
        return versions
    return await _write(context, session, principal.key_id, None, versions, response)


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
    """Where auto-dispatch would send such a case now, which entry decided it, or that none does."""
    try:
        found = context.case_policy.route(category=category, grid=grid, owner=owner)
    except GridCodeError as err:
        return problem(422, str(err), errors=[{"field": "query.grid", "reason": str(err)}])
    if found is None:
        return RouteAnswer(unit=None, explanation="no entry matches: dispatched by hand")
    return RouteAnswer(unit=found.unit, by_owner=found.by_owner, explanation=found.explain())


async def _write(
    context: ApiContext,
    session: AsyncSession,
    actor: str,
    table: RoutingTable | None,
    versions: frozenset[int] | None,
    response: Response,
) -> Any:
    try:
        async with session.begin():
            stored = await routing_store.save(
                session=session, table=table, versions=versions, actor=actor, at=datetime.now(UTC)
            )
    except routing_store.StaleRoutingError as err:
        stale = problem(412, str(err), current_version=err.current)
        stale.headers["ETag"] = etag(err.current)
        return stale
    except DATABASE_UNAVAILABLE as err:
        log.warning("routing table not changed: database unavailable: %s", err)
        # The driver's message may name hosts and users: it goes to the log, not the caller.
        return database_unavailable("the database is unavailable; nothing changed, try again")
    routing = context.case_policy.routing
    routing.adopt(stored)
    state = routing.state
    log.info(
        "routing table in force: source %s, version %d, %d routes, by %s",
        state.source, state.version, len(state.table.routes) if state.table else 0, actor,
    )  # fmt: skip
    return _answer(state, response)


def _answer(state: RoutingState, response: Response) -> RoutingRead:
    response.headers["ETag"] = etag(state.version)
    table = state.table or RoutingTable()
    return RoutingRead(
        source=state.source,
        configured=state.table is not None,
        version=state.version,
        updated_at=state.updated_at,
        updated_by=state.updated_by,
        owners=table.owners,
        routes=table.routes,
    )
