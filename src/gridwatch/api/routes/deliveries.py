"""A subscription's deliveries, with their attempts, and the replay of its dead letters."""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from gridwatch.api.deps import SessionDep, permitted
from gridwatch.api.problems import PROBLEM_JSON, problem
from gridwatch.api.roles import Permission
from gridwatch.dispatch import deliveries
from gridwatch.dispatch.subscriptions import SubscriptionNotFoundError

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: _PROBLEM | {"description": "No such subscription"},
    422: _PROBLEM | {"description": "Names each field and why"},
}


class DeliveryPage(BaseModel):
    """Deliveries newest first; `next_before` pages on (null: no more)."""

    items: list[deliveries.DeliveryRead]
    next_before: int | None


class ReplayRequest(BaseModel):
    """Which dead letters to send again: by id, or those whose event was written in a span."""

    delivery_ids: list[int] | None = Field(default=None, min_length=1, max_length=10_000)
    since: AwareDatetime | None = Field(default=None, alias="from")
    until: AwareDatetime | None = Field(default=None, alias="to")

    @model_validator(mode="after")
    def _one_way(self) -> "ReplayRequest":
        spanned = self.since is not None or self.until is not None
        if (self.delivery_ids is None) == (not spanned):
            raise ValueError("give either delivery_ids or a span (from and/or to), not both")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("to must be after from")
        return self


class Replayed(BaseModel):
    """The dead letters made pending again, due now."""

    replayed: int
    delivery_ids: list[int]


@router.get(
    "/{subscription_id}/deliveries",
    **permitted(Permission.WEBHOOKS_READ),
    response_model=DeliveryPage,
    responses=_NOT_FOUND,
)
async def list_deliveries(
    subscription_id: str,
    session: SessionDep,
    status: Annotated[
        deliveries.DeliveryFilter | None,
        Query(description="pending, failed (pending after a failed attempt), dead, delivered"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="A delivery id.")] = None,
) -> Any:
    """The subscription's deliveries with their latest attempts (time, outcome, status code,
    latency, the first KiB of the answer)."""
    try:
        items = await deliveries.list_deliveries(
            session=session,
            subscription_id=subscription_id,
            status=status,
            limit=limit,
            before=before,
        )
    except SubscriptionNotFoundError as err:
        return problem(404, str(err))
    next_before = items[-1].id if len(items) == limit else None
    return DeliveryPage(items=items, next_before=next_before)


@router.post(
    "/{subscription_id}/replay",
    **permitted(Permission.WEBHOOKS_WRITE),
    response_model=Replayed,
    responses=_NOT_FOUND,
)
async def replay(
    subscription_id: str,
    session: SessionDep,
    request: Annotated[ReplayRequest, Body()],
) -> Any:
    """Send dead letters again, with a fresh budget of refusals: `{"delivery_ids": [...]}`, or
    `{"from": ..., "to": ...}` for those whose event was written in that span."""
    try:
        async with session.begin():
            ids = await deliveries.replay(
                session=session,
                subscription_id=subscription_id,
                delivery_ids=request.delivery_ids,
                since=request.since,
                until=request.until,
                now=datetime.now(UTC),
            )
    except SubscriptionNotFoundError as err:
        return problem(404, str(err))
    return Replayed(replayed=len(ids), delivery_ids=ids)
