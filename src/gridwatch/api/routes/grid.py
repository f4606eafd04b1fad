"""The grid hierarchy: read it as GeoJSON, replace it from GeoJSON."""

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel

from gridwatch.api.deps import ContextDep, SessionDep, permitted
from gridwatch.api.roles import Permission
from gridwatch.registry.grid_store import load_grid, parse_geojson, replace_grid

router = APIRouter(prefix="/api/v1/grid", tags=["grid"])


class GridReplaced(BaseModel):
    """How many units the new grid has, and the ones whose parent level is missing."""

    units: int
    orphans: list[str]


@router.get("", **permitted(Permission.GRID_READ))
async def get_grid(session: SessionDep) -> dict[str, Any]:
    """The whole grid as a GeoJSON FeatureCollection (district → street → community → grid)."""
    return (await load_grid(session=session)).to_geojson()


@router.put("", **permitted(Permission.GRID_WRITE))
async def put_grid(
    collection: Annotated[dict[str, Any], Body(description="A GeoJSON FeatureCollection.")],
    session: SessionDep,
    context: ContextDep,
) -> GridReplaced:
    """Replace the whole grid; features carry properties `code`, `name` and optional `level`."""
    units = parse_geojson(collection)
    async with session.begin():
        count = await replace_grid(session=session, units=units)
    index = await load_grid(session=session)
    await context.sensors_changed()
    return GridReplaced(units=count, orphans=[unit.code for unit in index.orphans()])
