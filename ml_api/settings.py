"""Configuration of the ML prediction service, read from ML_API_* environment variables."""

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# 1000 items whose four text fields all hold 1000 ASCII characters weigh about 4.2 MB.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


class ServiceSettings(BaseSettings):
    """Service settings; every field maps to an ML_API_<NAME> environment variable."""

    model_config = SettingsConfigDict(env_prefix="ML_API_", frozen=True, extra="ignore")

    max_batch: int = Field(default=1000, ge=1, description="Most transactions per /predict call.")
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES,
        ge=1,
        description="Largest request body in bytes (more: 413, refused before it is all read).",
    )
    max_string_length: int = Field(
        default=1000, ge=1, description="Longest text field of an item, in characters (more: 422)."
    )
    fail_first_n: int = Field(
        default=0, ge=0, description="Test hook: the first N /predict calls answer 503."
    )
    enable_faults: bool = Field(
        default=False, description="Test hook: expose POST /admin/faults to arm failures."
    )
    faults_token: SecretStr | None = Field(
        default=None,
        description="Bearer token POST /admin/faults requires; needed when faults are enabled.",
    )
    gc_tuning: bool = Field(
        default=True, description="Freeze start-up objects and batch young-GC runs (faster)."
    )

    @model_validator(mode="after")
    def _faults_need_a_token(self) -> Self:
        """Refuse to expose the fault endpoint without a token to guard it."""
        token = self.faults_token
        if self.enable_faults and (token is None or not token.get_secret_value().strip()):
            raise ValueError(
                "ML_API_ENABLE_FAULTS=true requires ML_API_FAULTS_TOKEN (a non-blank secret)"
            )
        return self
