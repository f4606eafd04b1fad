"""Webhook subscriptions: create, change, rotate the secret, delete; which events each gets.

Services never commit: the caller owns the transaction. Writes through the API are
conditional on the version the caller read (`versions`; None: whatever is stored), checked
again in the UPDATE itself, so of two writers at one version exactly one wins.

The settings' GRIDWATCH_WEBHOOK_URL is kept as one subscription at start-up
(`ensure_subscription`), marked `managed_by: settings`: its URL and secret come from the
settings, so the API refuses to change them or to delete it.
"""

import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gridwatch.cases.models import OutboxEvent
from gridwatch.cases.routing import category_matches
from gridwatch.dispatch.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from gridwatch.dispatch.subscription_schemas import (
    DEFAULT_OVERLAP_S,
    MAX_URL_LENGTH,
    SecretRotation,
    SubscriptionCreate,
    SubscriptionUpdate,
    generate_secret,
)
from gridwatch.domain import Severity
from gridwatch.registry.grid import GridCodeError, parse_grid_code

MANAGED_BY_SETTINGS = "settings"
_RANK = {severity.value: severity.rank for severity in Severity}


class SubscriptionNotFoundError(Exception):
    """No such subscription (or a deleted one)."""

    def __init__(self, subscription_id: str) -> None:
        self.subscription_id = subscription_id
        super().__init__(f"no webhook subscription {subscription_id!r}")


class StaleSubscriptionError(Exception):
    """The subscription changed since the version the caller read."""

    def __init__(
        self, *, subscription_id: str, expected: frozenset[int], current: int | None
    ) -> None:
        self.subscription_id = subscription_id
        self.expected = expected
        # None when a concurrent writer won the conditional update after the row was read.
        self.current = current
        wanted = ", ".join(str(version) for version in sorted(expected))
        now = f"version {current}" if current is not None else "a newer version"
        super().__init__(
            f"webhook subscription {subscription_id} is at {now}, not {wanted}: read it again"
        )


class DuplicateUrlError(Exception):
    """Another subscription already sends to this URL."""

    def __init__(self, *, url: str, existing_id: str | None) -> None:
        self.url = url
        self.existing_id = existing_id
        which = f" ({existing_id})" if existing_id else ""
        super().__init__(f"a subscription{which} already sends to {url}: change that one instead")


class ManagedSubscriptionError(Exception):
    """The change belongs to the settings, not the API."""

    def __init__(self, *, subscription_id: str, change: str) -> None:
        self.subscription_id = subscription_id
        self.change = change
        super().__init__(
            f"webhook subscription {subscription_id} comes from GRIDWATCH_WEBHOOK_URL and "
            f"GRIDWATCH_WEBHOOK_SECRET: {change} there and restart"
        )


class SecretInUseError(ValueError):
    """A rotation to the secret already in force."""

    field = "secret"
    reason = "is the secret in force; rotate to a new one"


# ------------------------------------------------------------------------------------- reading
async def list_subscriptions(*, session: AsyncSession) -> Sequence[WebhookSubscription]:
    """Every subscription not deleted, oldest first."""
    statement = (
        select(WebhookSubscription)
        .where(WebhookSubscription.deleted_at.is_(None))
        .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
    )
    return (await session.scalars(statement)).all()


async def get_subscription(*, session: AsyncSession, subscription_id: str) -> WebhookSubscription:
    """One subscription not deleted, or SubscriptionNotFoundError."""
    subscription = await session.get(WebhookSubscription, subscription_id)
    if subscription is None or subscription.deleted_at is not None:
        raise SubscriptionNotFoundError(subscription_id)
    return subscription


# ------------------------------------------------------------------------------------- writing
async def create_subscription(
    *, session: AsyncSession, request: SubscriptionCreate, at: datetime
) -> tuple[WebhookSubscription, str]:
    """A new subscription and its secret (the one given, or a generated one)."""
    await _check_url_free(session, request.url, subscription_id=None)
    secret = request.secret or generate_secret()
    subscription = WebhookSubscription(
        id=f"sub_{secrets.token_hex(8)}",
        url=request.url,
        secret=secret,
        previous_secret=None,
        previous_secret_expires_at=None,
        types=_types(request.types),
        filter=request.filter.stored(),
        enabled=request.enabled,
        disabled_reason=None if request.enabled else "created disabled",
        description=request.description,
        managed_by=None,
        version=1,
        created_at=at,
        updated_at=at,
        deleted_at=None,
    )
    session.add(subscription)
    try:
        await session.flush()
    except IntegrityError as err:  # a concurrent create for the same URL won
        raise DuplicateUrlError(url=request.url, existing_id=None) from err
    return subscription, secret


async def update_subscription(
    *,
    session: AsyncSession,
    subscription_id: str,
    changes: SubscriptionUpdate,
    versions: frozenset[int] | None,
    at: datetime,
    actor: str,
) -> WebhookSubscription:
    """Replace the fields given; enabling clears why it was disabled."""
    subscription = await _for_write(session, subscription_id, versions)
    given = changes.model_fields_set
    values: dict[str, Any] = {}
    if "url" in given and changes.url != subscription.url:
        assert changes.url is not None  # refused as null by the schema
        if subscription.managed_by is not None:
            raise ManagedSubscriptionError(
                subscription_id=subscription_id, change="change GRIDWATCH_WEBHOOK_URL"
            )
        await _check_url_free(session, changes.url, subscription_id=subscription_id)
        values["url"] = changes.url
    if "types" in given and changes.types is not None:
        values["types"] = _types(changes.types)
    if "filter" in given and changes.filter is not None:
        values["filter"] = changes.filter.stored()
    if "description" in given:
        values["description"] = changes.description or ""
    if "enabled" in given and changes.enabled != subscription.enabled:
        values["enabled"] = changes.enabled
        values["disabled_reason"] = None if changes.enabled else f"disabled by {actor}"
    if not values:
        return subscription  # nothing to change: the version stays
    return await _write(session, subscription, values, at=at)


async def rotate_secret(
    *,
    session: AsyncSession,
    subscription_id: str,
    rotation: SecretRotation,
    versions: frozenset[int] | None,
    at: datetime,
) -> tuple[WebhookSubscription, str]:
    """Put a new secret in force; the one it replaces still signs for `overlap_s` seconds."""
    subscription = await _for_write(session, subscription_id, versions)
    if subscription.managed_by is not None:
        raise ManagedSubscriptionError(
            subscription_id=subscription_id, change="change GRIDWATCH_WEBHOOK_SECRET"
        )
    secret = rotation.secret or generate_secret()
    if secret == subscription.secret:
        raise SecretInUseError(SecretInUseError.reason)
    values = _rotation(subscription.secret, secret, at=at, overlap_s=rotation.overlap_s)
    return await _write(session, subscription, values, at=at), secret


async def delete_subscription(
    *, session: AsyncSession, subscription_id: str, versions: frozenset[int] | None, at: datetime
) -> None:
    """Stop sending to it for good; its URL can be subscribed again."""
    subscription = await _for_write(session, subscription_id, versions)
    if subscription.managed_by is not None:
        raise ManagedSubscriptionError(
            subscription_id=subscription_id, change="unset GRIDWATCH_WEBHOOK_URL (or disable it)"
        )
    # Its deliveries and attempts refer to the row, so it stays; the unique URL moves aside.
    values = {
        # The settings' URL is not held to the API's length: cut to leave the tombstone room.
        "url": f"{subscription.url[:MAX_URL_LENGTH]}#deleted:{subscription.id}",
        "enabled": False,
        "disabled_reason": "deleted",
        "deleted_at": at,
    }
    await _write(session, subscription, values, at=at)
    # What was still to send will never be: dead letters, so nothing waits on them forever.
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.subscription_id == subscription_id,
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
        )
        .values(status=DeliveryStatus.DEAD.value, last_error="subscription deleted")
        .execution_options(synchronize_session=False)
    )


async def ensure_subscription(
    *,
    session: AsyncSession,
    url: str,
    secret: str,
    types: list[str] | None = None,
    at: datetime | None = None,
    overlap_s: int = DEFAULT_OVERLAP_S,
) -> WebhookSubscription:
    """The settings' subscription for this URL, created, or adopted and given this secret.

    A changed secret is a rotation: the previous one still signs for `overlap_s` seconds.
    Types are replaced only when given, so a filter set through the API survives restarts.
    A subscription the settings made for another URL before becomes an ordinary one.
    """
    at = at or datetime.now(UTC)
    subscription = await session.scalar(
        select(WebhookSubscription).where(WebhookSubscription.url == url)
    )
    if subscription is None:
        subscription = WebhookSubscription(
            id=f"sub_{secrets.token_hex(8)}",
            url=url,
            secret=secret,
            types=types or [],
            filter={},
            enabled=True,
            disabled_reason=None,
            description="GRIDWATCH_WEBHOOK_URL",
            managed_by=MANAGED_BY_SETTINGS,
            version=1,
            created_at=at,
            updated_at=at,
        )
        session.add(subscription)
        await session.flush()
    else:
        values: dict[str, Any] = {"managed_by": MANAGED_BY_SETTINGS}
        if secret != subscription.secret:
            values |= _rotation(subscription.secret, secret, at=at, overlap_s=overlap_s)
        if types is not None:
            values["types"] = types
        changed = {k: v for k, v in values.items() if getattr(subscription, k) != v}
        if changed:
            for name, value in changed.items():
                setattr(subscription, name, value)
            subscription.version += 1
            subscription.updated_at = at
    await session.execute(
        update(WebhookSubscription)
        .where(
            WebhookSubscription.managed_by == MANAGED_BY_SETTINGS,
            WebhookSubscription.id != subscription.id,
        )
        .values(managed_by=None, updated_at=at, version=WebhookSubscription.version + 1)
        .execution_options(synchronize_session=False)
    )
    return subscription


# ------------------------------------------------------------------------------------ delivery
def subscription_matches(subscription: WebhookSubscription, event: OutboxEvent) -> bool:
    """Whether the event goes to the subscription: its types (empty: all) and its filter."""
    if subscription.deleted_at is not None:
        return False
    types = subscription.types
    if types and event.type not in types:
        return False
    wanted = subscription.filter
    if not wanted:
        return True
    data = event.body.get("data")
    return isinstance(data, Mapping) and case_matches(wanted, data)


def case_matches(wanted: Mapping[str, Any], case: Mapping[str, Any]) -> bool:
    """Whether a case snapshot (an event's `data`) passes a stored filter; pure and cheap."""
    category = wanted.get("category")
    if category is not None and not category_matches(category, case.get("category") or ""):
        return False
    grid = wanted.get("grid")
    if grid is not None:
        code = case.get("grid")
        if not isinstance(code, str) or not _widened(code).startswith(_widened(grid)):
            return False
    minimum = wanted.get("min_severity")
    return minimum is None or _RANK.get(case.get("severity") or "", -1) >= _RANK.get(minimum, 0)


def signing_secrets(subscription: WebhookSubscription, now: datetime) -> list[str]:
    """The secrets a delivery made at `now` is signed with, one signature each, newest first."""
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret and expires is not None and now < expires:
        return [subscription.secret, subscription.previous_secret]
    return [subscription.secret]


# ------------------------------------------------------------------------------------- helpers
def _widened(code: str) -> str:
    # Only a 14-digit legacy unit-grid code differs from its 15-digit form; parsing every
    # event's code would cost more than the rest of the match.
    if len(code) != 14:
        return code
    try:
        return parse_grid_code(code).widened()
    except GridCodeError:
        return code


def _types(types: list[Any]) -> list[str]:
    return [str(value) for value in dict.fromkeys(types)]


def _rotation(current: str, new: str, *, at: datetime, overlap_s: int) -> dict[str, Any]:
    if overlap_s <= 0:
        return {"secret": new, "previous_secret": None, "previous_secret_expires_at": None}
    return {
        "secret": new,
        "previous_secret": current,
        "previous_secret_expires_at": at + timedelta(seconds=overlap_s),
    }


async def _check_url_free(session: AsyncSession, url: str, *, subscription_id: str | None) -> None:
    holder = await session.scalar(
        select(WebhookSubscription.id).where(WebhookSubscription.url == url)
    )
    if holder is not None and holder != subscription_id:
        raise DuplicateUrlError(url=url, existing_id=holder)


async def _for_write(
    session: AsyncSession, subscription_id: str, versions: frozenset[int] | None
) -> WebhookSubscription:
    subscription = await get_subscription(session=session, subscription_id=subscription_id)
    if versions is not None and subscription.version not in versions:
        raise StaleSubscriptionError(
            subscription_id=subscription_id, expected=versions, current=subscription.version
        )
    return subscription


async def _write(
    session: AsyncSession,
    subscription: WebhookSubscription,
    values: dict[str, Any],
    *,
    at: datetime,
) -> WebhookSubscription:
    """One conditional UPDATE at the version read; a concurrent writer makes it match nothing."""
    expires = subscription.previous_secret_expires_at
    if "previous_secret" not in values and expires is not None and expires <= at:
        # An ended overlap: the old secret signs nothing more, so it is not kept.
        values |= {"previous_secret": None, "previous_secret_expires_at": None}
    read_at = subscription.version
    statement = (
        update(WebhookSubscription)
        .where(
            WebhookSubscription.id == subscription.id,
            WebhookSubscription.version == read_at,
            WebhookSubscription.deleted_at.is_(None),
        )
        .values(**values, version=read_at + 1, updated_at=at)
        .returning(WebhookSubscription.version)
        .execution_options(synchronize_session=False)
    )
    try:
        written = (await session.execute(statement)).scalar_one_or_none()
    except IntegrityError as err:  # a concurrent write took the URL first
        raise DuplicateUrlError(url=values.get("url", subscription.url), existing_id=None) from err
    if written is None:
        raise StaleSubscriptionError(
            subscription_id=subscription.id, expected=frozenset({read_at}), current=None
        )
    await session.refresh(subscription)
    return subscription
