"""Request dependencies: the service context, a database session, and role-checked API keys."""

import hmac
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from gridwatch.api.context import ApiContext
from gridwatch.api.keys import Principal, authenticate, digest
from gridwatch.api.roles import Permission, Role, allows

_bearer = HTTPBearer(auto_error=False, description="An API key: Authorization: Bearer <key>")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
BOOTSTRAP_ADMIN = Principal(key_id="bootstrap", name="GRIDWATCH_ADMIN_KEY", role=Role.ADMIN)


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


async def get_principal(
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller behind the bearer key, or 401."""
    if credentials is None:
        raise HTTPException(401, "an API key is required: Authorization: Bearer <key>", _CHALLENGE)
    key = credentials.credentials
    bootstrap = context.admin_key_digest
    if bootstrap is not None and hmac.compare_digest(digest(key), bootstrap):
        return BOOTSTRAP_ADMIN
    # Its own session: the route's session must start without a transaction begun.
    async with context.sessions() as session:
        principal = await authenticate(session=session, key=key)
    if principal is None:
        raise HTTPException(401, "the API key is not valid", _CHALLENGE)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _checker(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def check(principal: PrincipalDep) -> Principal:
        if not allows(principal.role, permission):
            raise HTTPException(403, f"role {principal.role} may not do this (needs {permission})")
        return principal

    return check


def permitted(permission: Permission) -> dict[str, Any]:
    """Route options that require `permission` and publish it in OpenAPI as x-permission."""
    return {
        "dependencies": [Depends(_checker(permission))],
        "openapi_extra": {"x-permission": permission.value},
    }
