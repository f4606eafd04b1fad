"""Liveness, readiness and Prometheus metrics."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gridwatch.api.deps import ContextDep, permitted
from gridwatch.api.roles import Permission

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(context: ContextDep) -> JSONResponse:
    """Every dependency is reachable: 200, else 503 with the failing checks."""
    checks = await context.readiness()
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", **permitted(Permission.METRICS_READ))
async def metrics(context: ContextDep) -> Response:
    """Prometheus exposition of the service's metrics."""
    return Response(generate_latest(context.metrics.registry), media_type=CONTENT_TYPE_LATEST)
