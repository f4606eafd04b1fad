"""RFC 9457 problem details for every error the API returns."""

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridwatch.registry.problems import RegistryError

PROBLEM_JSON = "application/problem+json"
# How the database being away surfaces: a refused or dropped connection, a pool that has no
# connection to give. Any route (and the API key check before it) may meet one.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError, ConnectionError)
RETRY_AFTER_S = 5

log = logging.getLogger("gridwatch.api")


def problem(status: int, detail: str, **extra: Any) -> JSONResponse:
    """A problem+json response; `type` stays about:blank, so `title` is the status phrase."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    body |= {"detail": detail} | extra
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response = problem(exc.status_code, str(exc.detail), instance=request.url.path)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": ".".join(str(part) for part in error["loc"] if part != "body"),
            "reason": error["msg"],
        }
        for error in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
    return problem(422, detail, instance=request.url.path, errors=errors)


async def _registry_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RegistryError)
    errors = [problem.as_json() for problem in exc.problems]
    return problem(exc.status, exc.summary, instance=request.url.path, errors=errors)


def database_unavailable(detail: str = "the database is unavailable; try again") -> JSONResponse:
    """503 with Retry-After; the driver's message names hosts and users, so it is not in it."""
    response = problem(503, detail)
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc)
    return database_unavailable()


def install_problem_handlers(app: FastAPI) -> None:
    """Route HTTP, validation, registry and database-outage errors through problem+json."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RegistryError, _registry_error)
    for unavailable in DATABASE_UNAVAILABLE:
        app.add_exception_handler(unavailable, _database_error)
