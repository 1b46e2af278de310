"""PostgreSQL adapters: the store, bulk upserts, dead letters, the schema, an embedded server."""
