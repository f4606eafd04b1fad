"""What the webhooks API takes and shows: a subscription, its filter, a secret rotation.

Secrets follow Standard Webhooks: `whsec_` and the base64 of 24 to 64 random bytes.
"""

import base64
import binascii
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from gridwatch.cases.events import CaseEventType
from gridwatch.cases.routing import check_category_pattern
from gridwatch.dispatch.models import WebhookSubscription
from gridwatch.domain import Severity
from gridwatch.registry.grid import GridCodeError, parse_grid_code

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
SECRET_BYTES = 32  # what a generated secret has
MIN_SECRET_BYTES = 24  # the spec's range for secrets given through the API
MAX_SECRET_BYTES = 64
# The column holds 2,000 characters; a deleted subscription's tombstone adds to its URL.
MAX_URL_LENGTH = 1900
DEFAULT_OVERLAP_S = 86_400
MAX_OVERLAP_S = 30 * 86_400
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def generate_secret() -> str:
    """A fresh secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_problem(secret: str) -> str | None:
    """What is wrong with a secret given through the API, or None when it can be used."""
    if not secret.startswith(SECRET_PREFIX):
        return f"must start with {SECRET_PREFIX!r}, followed by base64"
    encoded = secret.removeprefix(SECRET_PREFIX)
    if not _BASE64.match(encoded):
        return f"must be {SECRET_PREFIX!r} followed by base64 (A-Z, a-z, 0-9, +, /, = padding)"
    try:
        # Padding may be left off, as the standardwebhooks library allows.
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        return "is not valid base64"
    if not MIN_SECRET_BYTES <= len(raw) <= MAX_SECRET_BYTES:
        return (
            f"must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes (Standard Webhooks), "
            f"not {len(raw)}"
        )
    return None


def url_problem(url: str) -> str | None:
    """What is wrong with a receiver URL, or None: absolute http(s), a host, no fragment."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when it is not a number in range
    except ValueError as err:
        return f"is not a valid URL ({err})"
    if parts.scheme not in ("http", "https"):
        return f"must be an http:// or https:// URL, not {parts.scheme or 'relative'}"
    if not parts.hostname:
        return "must name a host"
    if port == 0:
        return "must not use port 0"
    if any(char.isspace() for char in url):
        return "must not contain whitespace"
    if parts.fragment or url.endswith("#"):
        return "must not have a #fragment (it is never sent)"
    return None


def _custom(check: Callable[[str], str | None], kind: str) -> AfterValidator:
    def validate(value: str) -> str:
        problem = check(value)
        if problem is not None:
            # The reason goes in as context: a URL may contain braces.
            raise PydanticCustomError(kind, "{reason}", {"reason": problem})
        return value

    return AfterValidator(validate)


WebhookUrl = Annotated[
    str,
    Field(min_length=1, max_length=MAX_URL_LENGTH, examples=["https://dispatch.example/hooks"]),
    _custom(url_problem, "url"),
]
WebhookSecret = Annotated[
    str,
    Field(description="`whsec_` + base64 of 24-64 bytes; generated when absent."),
    _custom(secret_problem, "secret"),
]
Description = Annotated[str, Field(max_length=500)]
EventTypes = Annotated[
    list[CaseEventType],
    Field(max_length=len(CaseEventType), description="Event types sent; empty: every type."),
]


class SubscriptionFilter(BaseModel):
    """Which cases' events are sent; every field given must match, none given: every case."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: str | None = Field(
        default=None,
        max_length=33,
        description="A case category (`event:0401`), a prefix ending in `*` (`event:04*`), or `*`.",
        examples=["event:04*"],
    )
    grid: str | None = Field(
        default=None,
        description="A grid code at any level: cases in that district, street, community or "
        "unit grid.",
        examples=["110101"],
    )
    min_severity: Severity | None = Field(
        default=None, description="The lowest severity sent (blue < yellow < orange < red)."
    )

    @field_validator("category")
    @classmethod
    def _check_category(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_category_pattern(value)
        except ValueError as err:
            raise PydanticCustomError("category", "{reason}", {"reason": str(err)}) from err

    @field_validator("grid")
    @classmethod
    def _check_grid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return parse_grid_code(value, field="grid").code
        except GridCodeError as err:
            raise PydanticCustomError("grid", "{reason}", {"reason": err.reason}) from err

    def stored(self) -> dict[str, Any]:
        """The filter as the subscription row keeps it: only the fields given."""
        return self.model_dump(mode="json", exclude_none=True)


class SubscriptionCreate(BaseModel):
    """A new subscription; the secret is generated when not given."""

    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl
    types: EventTypes = Field(default_factory=list)
    filter: SubscriptionFilter = Field(default_factory=SubscriptionFilter)
    secret: WebhookSecret | None = None
    enabled: bool = True
    description: Description = ""


class SubscriptionUpdate(BaseModel):
    """Fields to replace; absent ones stay. The secret changes only by rotation."""

    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl | None = None
    types: EventTypes | None = None
    filter: SubscriptionFilter | None = Field(
        default=None, description="Replaces the whole filter; `{}` sends every case."
    )
    enabled: bool | None = Field(
        default=None, description="false stops deliveries; events meanwhile wait for true."
    )
    description: Description | None = None

    @field_validator("url", "types", "filter", "enabled")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("not_null", "must not be null; leave it out to keep it")
        return value


class SecretRotation(BaseModel):
    """A new secret (generated when absent) and how long the previous one still signs."""

    model_config = ConfigDict(extra="forbid")

    secret: WebhookSecret | None = None
    overlap_s: int = Field(
        default=DEFAULT_OVERLAP_S,
        ge=0,
        le=MAX_OVERLAP_S,
        description="Seconds during which deliveries carry a signature with each secret; "
        "0 retires the previous secret at once.",
    )


class SubscriptionRead(BaseModel):
    """A subscription as the API shows it: never its secret."""

    id: str
    url: str
    types: list[str]
    filter: SubscriptionFilter
    enabled: bool
    disabled_reason: str | None
    description: str
    managed_by: str | None = Field(
        description="`settings`: GRIDWATCH_WEBHOOK_URL's subscription, whose URL and secret "
        "come from the settings"
    )
    version: int = Field(description="Bumped by every change; the ETag, for If-Match")
    created_at: datetime
    updated_at: datetime
    previous_secret_expires_at: datetime | None = Field(
        description="Until then deliveries are signed with the previous secret too"
    )

    @classmethod
    def of(cls, subscription: WebhookSubscription, *, now: datetime) -> Self:
        """The row as shown at `now` (an overlap that has ended is not shown)."""
        expires = subscription.previous_secret_expires_at
        return cls(
            id=subscription.id,
            url=subscription.url,
            types=list(subscription.types),
            filter=SubscriptionFilter.model_validate(subscription.filter),
            enabled=subscription.enabled,
            disabled_reason=subscription.disabled_reason,
            description=subscription.description,
            managed_by=subscription.managed_by,
            version=subscription.version,
            created_at=subscription.created_at,
            updated_at=subscription.updated_at or subscription.created_at,
            previous_secret_expires_at=expires if expires is not None and expires > now else None,
        )


class SubscriptionWithSecret(SubscriptionRead):
    """A subscription with its secret in force: the answer to a create or a rotation only."""

    secret: str = Field(description="Shown in this answer only; keep it now")
