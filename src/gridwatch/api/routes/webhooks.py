"""Webhook subscriptions: list, create, read, change, rotate the secret, delete.

A secret is shown once, in the answer to the create or the rotation that made it; never
again. Changes need `If-Match` with the version read (the `ETag`), or `*`: without it 428,
with a stale one 412, and nothing changes.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gridwatch.api.deps import PrincipalDep, SessionDep, permitted
from gridwatch.api.problems import PROBLEM_JSON, problem
from gridwatch.api.roles import Permission
from gridwatch.api.routes.cases import etag, write_preconditions
from gridwatch.dispatch import subscriptions
from gridwatch.dispatch.models import WebhookSubscription
from gridwatch.dispatch.subscription_schemas import (
    SecretRotation,
    SubscriptionCreate,
    SubscriptionRead,
    SubscriptionUpdate,
    SubscriptionWithSecret,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
READ = permitted(Permission.WEBHOOKS_READ)
WRITE = permitted(Permission.WEBHOOKS_WRITE)
IfMatch = Annotated[str | None, Header(description='The version read: "3", W/"3", or *.')]

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _PROBLEM | {"description": "No such one"}}
_CONDITIONAL: dict[int | str, dict[str, Any]] = _NOT_FOUND | {
    400: _PROBLEM | {"description": "If-Match is not a version ETag or *"},
    409: _PROBLEM | {"description": "The URL is taken, or the settings own this change"},
    412: _PROBLEM | {"description": "The subscription changed since the If-Match version"},
    422: _PROBLEM | {"description": "Names each field and why"},
    428: _PROBLEM | {"description": "If-Match is required"},
}

_REFUSALS = (
    subscriptions.SubscriptionNotFoundError,
    subscriptions.StaleSubscriptionError,
    subscriptions.DuplicateUrlError,
    subscriptions.ManagedSubscriptionError,
    subscriptions.SecretInUseError,
)


class SubscriptionList(BaseModel):
    """Every subscription, oldest first."""

    items: list[SubscriptionRead]


@router.get("", **READ)
async def list_webhooks(session: SessionDep) -> SubscriptionList:
    """Every subscription (not their secrets)."""
    rows = await subscriptions.list_subscriptions(session=session)
    now = datetime.now(UTC)
    return SubscriptionList(items=[SubscriptionRead.of(row, now=now) for row in rows])


@router.post(
    "",
    status_code=201,
    **WRITE,
    response_model=SubscriptionWithSecret,
    responses={409: _PROBLEM | {"description": "A subscription sends to this URL already"}},
)
async def create_webhook(
    request: SubscriptionCreate, session: SessionDep, response: Response
) -> Any:
    """Subscribe a URL to case events; the answer shows the secret, and only this answer."""
    now = datetime.now(UTC)
    try:
        async with session.begin():
            row, secret = await subscriptions.create_subscription(
                session=session, request=request, at=now
            )
    except subscriptions.DuplicateUrlError as err:
        return _conflict(err)
    response.headers["Location"] = f"/api/v1/webhooks/{row.id}"
    return _with_secret(row, secret, response, now=now)


@router.get("/{subscription_id}", **READ, response_model=SubscriptionRead, responses=_NOT_FOUND)
async def get_webhook(subscription_id: str, session: SessionDep, response: Response) -> Any:
    """One subscription; its `ETag` is the version to send back in `If-Match`."""
    try:
        row = await subscriptions.get_subscription(session=session, subscription_id=subscription_id)
    except subscriptions.SubscriptionNotFoundError as err:
        return problem(404, str(err))
    return _read(row, response, now=datetime.now(UTC))


@router.patch(
    "/{subscription_id}", **WRITE, response_model=SubscriptionRead, responses=_CONDITIONAL
)
async def update_webhook(
    subscription_id: str,
    changes: SubscriptionUpdate,
    session: SessionDep,
    principal: PrincipalDep,
    response: Response,
    if_match: IfMatch = None,
) -> Any:
    """Change the URL, types, filter, description, or enable and disable it."""
    versions = write_preconditions(if_match, what="the subscription")
    if isinstance(versions, JSONResponse):
        return versions
    now = datetime.now(UTC)
    try:
        async with session.begin():
            row = await subscriptions.update_subscription(
                session=session,
                subscription_id=subscription_id,
                changes=changes,
                versions=versions,
                at=now,
                actor=principal.key_id,
            )
    except _REFUSALS as err:
        return _refused(err)
    return _read(row, response, now=now)


@router.post(
    "/{subscription_id}/rotate-secret",
    **WRITE,
    response_model=SubscriptionWithSecret,
    responses=_CONDITIONAL,
)
async def rotate_webhook_secret(
    subscription_id: str,
    session: SessionDep,
    response: Response,
    rotation: Annotated[SecretRotation | None, Body()] = None,
    if_match: IfMatch = None,
) -> Any:
    """A new secret, shown in this answer only; the old one still signs for `overlap_s` seconds.

    During the overlap every delivery carries two signatures in `webhook-signature`, one per
    secret, so the receiver can switch whenever it likes within it.
    """
    versions = write_preconditions(if_match, what="the subscription")
    if isinstance(versions, JSONResponse):
        return versions
    now = datetime.now(UTC)
    try:
        async with session.begin():
            row, secret = await subscriptions.rotate_secret(
                session=session,
                subscription_id=subscription_id,
                rotation=rotation or SecretRotation(),
                versions=versions,
                at=now,
            )
    except _REFUSALS as err:
        return _refused(err)
    return _with_secret(row, secret, response, now=now)


@router.delete("/{subscription_id}", status_code=204, **WRITE, responses=_CONDITIONAL)
async def delete_webhook(
    subscription_id: str, session: SessionDep, if_match: IfMatch = None
) -> Response:
    """Stop sending to it for good; its URL can be subscribed again."""
    versions = write_preconditions(if_match, what="the subscription")
    if isinstance(versions, JSONResponse):
        return versions
    try:
        async with session.begin():
            await subscriptions.delete_subscription(
                session=session,
                subscription_id=subscription_id,
                versions=versions,
                at=datetime.now(UTC),
            )
    except _REFUSALS as err:
        return _refused(err)
    return Response(status_code=204)


def _refused(err: Exception) -> JSONResponse:
    """The one translation of the service's refusals into problems."""
    if isinstance(err, subscriptions.SubscriptionNotFoundError):
        return problem(404, str(err))
    if isinstance(err, subscriptions.StaleSubscriptionError):
        stale = problem(412, str(err), current_version=err.current)
        if err.current is not None:
            stale.headers["ETag"] = etag(err.current)
        return stale
    if isinstance(err, subscriptions.DuplicateUrlError):
        return _conflict(err)
    if isinstance(err, subscriptions.SecretInUseError):
        errors = [{"field": err.field, "reason": err.reason}]
        return problem(422, f"{err.field}: {err.reason}", errors=errors)
    return problem(409, str(err))


def _conflict(err: subscriptions.DuplicateUrlError) -> JSONResponse:
    extra = {} if err.existing_id is None else {"subscription_id": err.existing_id}
    return problem(409, str(err), errors=[{"field": "url", "reason": str(err)}], **extra)


def _read(row: WebhookSubscription, response: Response, *, now: datetime) -> SubscriptionRead:
    response.headers["ETag"] = etag(row.version)
    return SubscriptionRead.of(row, now=now)


def _with_secret(
    row: WebhookSubscription, secret: str, response: Response, *, now: datetime
) -> SubscriptionWithSecret:
    read = _read(row, response, now=now)
    # A secret must not sit in a cache on the way.
    response.headers["Cache-Control"] = "no-store"
    return SubscriptionWithSecret(**read.model_dump(), secret=secret)
