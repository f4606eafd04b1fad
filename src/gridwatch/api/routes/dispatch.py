"""The dispatch queue: every case event in one total order, pulled by cursor, long-polled.

The events are the outbox's, with the bodies and ids the webhooks carry. A cursor is opaque;
a consumer that keeps the last one it processed and restarts from it sees every later event
exactly once (`dispatch.queue` says how the order is kept). Test (drill) cases are included,
as the webhooks include them: their `data.drill` is true.
"""

import asyncio
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from gridwatch.api.context import ApiContext
from gridwatch.api.deps import ContextDep, permitted
from gridwatch.api.problems import PROBLEM_JSON, problem
from gridwatch.api.roles import Permission
from gridwatch.cases.events import CaseEventType
from gridwatch.dispatch.feed import DispatchFeed
from gridwatch.dispatch.queue import (
    CursorError,
    QueuePage,
    decode_cursor,
    encode_cursor,
    read_page,
)

router = APIRouter(prefix="/api/v1/dispatch", tags=["dispatch"])
MAX_WAIT_S: Final = 30.0
MAX_LIMIT: Final = 1000
_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}


class PulledEvent(BaseModel):
    """An event and the cursor just past it (send it as `after` to continue from there)."""

    cursor: str
    event: dict[str, Any] = Field(description="The CloudEvent, exactly as the webhook body.")


class EventPage(BaseModel):
    """Events after the cursor, oldest first."""

    events: list[PulledEvent]
    next_cursor: str = Field(description="Where the next request starts (`after`).")
    has_more: bool = Field(description="More events are ready now: ask again without waiting.")


@router.get(
    "/events",
    **permitted(Permission.DISPATCH_READ),
    response_model=EventPage,
    responses={
        409: _PROBLEM | {"description": "The cursor is ahead of the queue (another database?)"},
        422: _PROBLEM,
    },
)
async def pull_events(
    request: Request,
    context: ContextDep,
    after: Annotated[
        str | None, Query(description="A cursor from an earlier answer; none: the beginning.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait for an event if none is.")
    ] = 0,
    types: Annotated[
        list[CaseEventType] | None, Query(description="Only these event types (repeatable).")
    ] = None,
) -> Any:
    """Case events after `after` in the queue's one order; waits up to `wait` s for one.

    With `types`, the cursor moves past the events left out too, so keep one cursor per filter.
    """
    try:
        position = decode_cursor(after) if after else 0
    except CursorError as err:
        return problem(422, str(err), errors=[{"field": "query.after", "reason": str(err)}])
    feed: DispatchFeed = request.app.state.dispatch_feed
    wanted = [event_type.value for event_type in types or ()]
    # Numbers everything committed before this request, so a restart misses nothing.
    horizon = await feed.sync()
    if position > horizon:
        return problem(
            409,
            f"the cursor is at position {position}, past the queue's last ({horizon}): it "
            "comes from another database; start again without `after`",
        )
    page = await _read(context, after=position, upto=horizon, limit=limit, types=wanted)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not page.events and not feed.closed:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        horizon = await feed.wait_beyond(page.next_position, remaining)
        if horizon > page.next_position:
            page = await _read(
                context, after=page.next_position, upto=horizon, limit=limit, types=wanted
            )
    return EventPage(
        events=[
            PulledEvent(cursor=encode_cursor(event.position), event=event.body)
            for event in page.events
        ],
        next_cursor=encode_cursor(page.next_position),
        has_more=page.more,
    )


async def _read(
    context: ApiContext, *, after: int, upto: int, limit: int, types: list[str]
) -> QueuePage:
    # A session per read: a long poll holds no connection while it waits.
    async with context.sessions() as session:
        return await read_page(session, after=after, upto=upto, limit=limit, types=types)
