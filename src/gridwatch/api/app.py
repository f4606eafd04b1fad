"""The FastAPI app factory; every app gets its own context, so tests can build many."""

from fastapi import FastAPI

from gridwatch.api.context import ApiContext
from gridwatch.api.problems import install_problem_handlers
from gridwatch.api.routes import (
    cases,
    deliveries,
    dispatch,
    grid,
    health,
    kpi,
    profiles,
    receipts,
    routing,
    rules,
    sensors,
    webhooks,
)
from gridwatch.dispatch.feed import DispatchFeed


def create_app(context: ApiContext) -> FastAPI:
    """An app serving /api/v1, health and metrics over the given context."""
    app = FastAPI(
        title="gridwatch",
        version="1.0.0",
        summary="IoT sensor gateway and case service for grid-based city management",
        openapi_url="/openapi.json",
    )
    app.state.context = context
    app.state.dispatch_feed = context.dispatch_feed or DispatchFeed(sessions=context.sessions)
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(cases.router)
    app.include_router(receipts.router)
    app.include_router(dispatch.router)
    app.include_router(kpi.router)
    app.include_router(routing.router)
    app.include_router(sensors.router)
    app.include_router(profiles.router)
    app.include_router(grid.router)
    app.include_router(rules.router)
    app.include_router(webhooks.router)
    app.include_router(deliveries.router)
    return app
