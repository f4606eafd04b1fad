"""API keys: random secrets stored as SHA-256 digests, each with one role."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gridwatch.api.roles import Role
from gridwatch.gateway.db import Base, UTCDateTime

KEY_PREFIX = "gw_"


class ApiKeyRow(Base):
    """An API key; the key itself is never stored, only its digest."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    # A 256-bit random key needs no slow hash: its digest cannot be brute-forced.
    key_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id and name, and its role."""

    key_id: str
    name: str
    role: Role


def digest(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


async def create_key(*, session: AsyncSession, role: Role, name: str) -> tuple[ApiKeyRow, str]:
    """A new key: the row, and the key in clear (shown once, never stored)."""
    key_id = f"key_{secrets.token_hex(6)}"
    key = f"{KEY_PREFIX}{secrets.token_urlsafe(32)}"
    row = ApiKeyRow(
        id=key_id,
        name=name,
        role=role.value,
        key_digest=digest(key),
        created_at=datetime.now(UTC),
        revoked_at=None,
    )
    session.add(row)
    return row, key


async def authenticate(*, session: AsyncSession, key: str) -> Principal | None:
    """The principal of an unrevoked key, or None."""
    row = await session.scalar(
        select(ApiKeyRow).where(ApiKeyRow.key_digest == digest(key), ApiKeyRow.revoked_at.is_(None))
    )
    if row is None:
        return None
    return Principal(key_id=row.id, name=row.name, role=Role(row.role))


async def revoke_key(*, session: AsyncSession, key_id: str) -> bool:
    """Revoke a key by id; False when there is no such unrevoked key."""
    row = await session.get(ApiKeyRow, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = datetime.now(UTC)
    return True


async def list_keys(*, session: AsyncSession) -> list[ApiKeyRow]:
    """Every key, newest first."""
    return list(await session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at.desc())))
