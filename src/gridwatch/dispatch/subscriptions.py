"""Webhook subscriptions; the settings' webhook_url is kept as one at start-up."""

import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gridwatch.cases.models import OutboxEvent
from gridwatch.dispatch.models import WebhookSubscription


async def ensure_subscription(
    *, session: AsyncSession, url: str, secret: str, types: list[str] | None = None
) -> WebhookSubscription:
    """The subscription for this URL, created or updated to the given secret and types."""
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
            created_at=datetime.now(UTC),
        )
        session.add(subscription)
    else:
        subscription.secret = secret
        subscription.types = types or []
    return subscription


def subscription_matches(subscription: WebhookSubscription, event: OutboxEvent) -> bool:
    """Whether the event goes to the subscription: its type filter (empty: every type)."""
    return not subscription.types or event.type in subscription.types


def signing_secrets(subscription: WebhookSubscription, now: datetime) -> list[str]:
    """The secrets a delivery made at `now` is signed with, one signature each."""
    del now  # one secret per subscription for now
    return [subscription.secret]
