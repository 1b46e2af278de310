"""Alembic migrations of the pipeline database (run through pipeline.adapters.postgres.schema)."""
