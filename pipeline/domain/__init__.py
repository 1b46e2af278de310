"""The domain: transactions, categorisations, rejects, errors and ports (stdlib only)."""
