"""The domain: transactions, categorisations, rejects, errors and ports (stdlib and pydantic only)."""
