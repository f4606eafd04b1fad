"""The FastAPI app factory; every app gets its own context, so tests can build many."""

from fastapi import FastAPI

from gridwatch.api.context import ApiContext
from gridwatch.api.problems import install_problem_handlers
from gridwatch.api.routes import cases, grid, health, kpi, profiles, routing, rules, sensors


def create_app(context: ApiContext) -> FastAPI:
    """An app serving /api/v1, health and metrics over the given context."""
    app = FastAPI(
        title="gridwatch",
        version="1.0.0",
        summary="IoT sensor gateway and case service for grid-based city management",
        openapi_url="/openapi.json",
    )
    app.state.context = context
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(cases.router)
    app.include_router(kpi.router)
    app.include_router(routing.router)
    app.include_router(sensors.router)
    app.include_router(profiles.router)
    app.include_router(grid.router)
    app.include_router(rules.router)
    return app
