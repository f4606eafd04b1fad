"""Planner statistics on the grid-code prefixes the KPI report groups cases by.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# cases.kpi groups by a grid code's first 6, 9 or 12 digits (district, street, community).
# Without statistics on those expressions PostgreSQL takes a tenth of the rows for the number
# of groups (100,000 for a year of a million cases, not a few hundred streets) and sorts them
# on disk instead of hashing them. Statistics, unlike an index, cost writes nothing.
_PREFIXES = {"district": 6, "street": 9, "community": 12}


def upgrade() -> None:
    if not _has_expression_statistics():
        return
    for level, digits in _PREFIXES.items():
        op.execute(f"CREATE STATISTICS st_cases_{level} ON (substr(grid, 1, {digits})) FROM cases")
    # Filled now, not at the next autovacuum, which a large table may not see for weeks.
    op.execute("ANALYZE cases")


def downgrade() -> None:
    if not _has_expression_statistics():
        return
    for level in _PREFIXES:
        op.execute(f"DROP STATISTICS IF EXISTS st_cases_{level}")


def _has_expression_statistics() -> bool:
    # PostgreSQL 14 added statistics on expressions; SQLite has no planner statistics to add.
    dialect = op.get_bind().dialect
    return dialect.name == "postgresql" and (dialect.server_version_info or (0,)) >= (14,)
