"""Transaction categorisation ML prediction service (FastAPI)."""
