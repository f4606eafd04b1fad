"""The grid hierarchy in the database: replaced whole from GeoJSON, read back as an index."""

from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from gridwatch.registry.grid import GridImportError, GridIndex, GridUnit, load_grid_geojson
from gridwatch.registry.models import GridUnitRow
from gridwatch.registry.problems import FieldProblem, RegistryError


def parse_geojson(document: object) -> list[GridUnit]:
    """Units from a GeoJSON FeatureCollection, or a RegistryError naming each feature and field."""
    try:
        return load_grid_geojson(document)  # type: ignore[arg-type]
    except GridImportError as err:
        raise RegistryError(
            [FieldProblem(issue.field, issue.reason, row=issue.feature) for issue in err.issues]
        ) from err


async def replace_grid(*, session: AsyncSession, units: Sequence[GridUnit]) -> int:
    """Swap the whole grid for `units` in the caller's transaction."""
    await session.execute(delete(GridUnitRow))
    rows = [
        {
            "code": unit.code,
            "name": unit.name,
            "level": unit.level.value,
            "parent": unit.parent,
            "geometry": unit.to_feature()["geometry"],
        }
        for unit in units
    ]
    for start in range(0, len(rows), 1000):
        await session.execute(insert(GridUnitRow), rows[start : start + 1000])
    return len(rows)


async def load_grid(*, session: AsyncSession) -> GridIndex:
    """The stored grid as an index."""
    rows = (await session.scalars(select(GridUnitRow).order_by(GridUnitRow.code))).all()
    if not rows:
        return GridIndex([])
    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"code": row.code, "name": row.name, "level": row.level},
                "geometry": row.geometry,
            }
            for row in rows
        ],
    }
    return GridIndex(load_grid_geojson(collection))
