"""Configuration of the ML prediction service, read from ML_API_* environment variables."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MlApiSettings(BaseSettings):
    """Service settings; every field maps to an ML_API_<NAME> environment variable."""

    model_config = SettingsConfigDict(env_prefix="ML_API_", frozen=True, extra="ignore")

    max_batch: int = Field(default=1000, ge=1, description="Most transactions per /predict call.")
    fail_first_n: int = Field(
        default=0, ge=0, description="Test hook: the first N /predict calls answer 503."
    )
    enable_faults: bool = Field(
        default=False, description="Test hook: expose POST /admin/faults to arm failures."
    )
    gc_tuning: bool = Field(
        default=True, description="Freeze start-up objects and batch young-GC runs (faster)."
    )
