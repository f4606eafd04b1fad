"""Request dependencies: the service context, a database session, and bearer-key auth."""

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from gridwatch.api.context import ApiContext

_bearer = HTTPBearer(auto_error=False, description="An API key: Authorization: Bearer <key>")


def hash_key(key: str) -> bytes:
    """Keys are compared by SHA-256 digest; a high-entropy key needs no slow hash."""
    return hashlib.sha256(key.encode()).digest()


def get_context(request: Request) -> ApiContext:
    """The context the app was built with."""
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


async def get_session(context: ContextDep) -> AsyncIterator[AsyncSession]:
    """A session for one request."""
    async with context.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def require_key(
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Refuse the request unless it carries a valid API key."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(401, "an API key is required: Authorization: Bearer <key>", challenge)
    expected = context.admin_key_hash
    if expected is None or not hmac.compare_digest(hash_key(credentials.credentials), expected):
        raise HTTPException(401, "the API key is not valid", challenge)


Authorized = Depends(require_key)
