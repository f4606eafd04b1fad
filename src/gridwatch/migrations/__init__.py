"""Alembic migrations; run by gridwatch.gateway.db.migrate at start-up."""
