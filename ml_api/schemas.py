"""Request and response models of the HTTP contract."""

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class PredictItem(BaseModel):
    """One transaction to categorise; unknown extra fields are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: uuid.UUID
    description: str
    amount: Decimal = Field(description="JSON number or numeric string.")
    timestamp: datetime = Field(description="ISO 8601 date-time.")
    merchant: str | None = None
    operation_type: str
    side: str


class Prediction(BaseModel):
    """The category predicted for one transaction."""

    transaction_id: uuid.UUID
    category: str


class ItemError(BaseModel):
    """Why one item (or, with a null index, the whole body) was rejected."""

    index: int | None = Field(description="Position of the item in the list; null for the body.")
    id: str | None = Field(description="The item's id as sent, when there is one.")
    field: str | None = Field(description="Dotted path of the invalid field inside the item.")
    message: str


class ValidationErrorResponse(BaseModel):
    """422 body: every problem found in the request."""

    detail: list[ItemError]


class ErrorResponse(BaseModel):
    """Error body with a human-readable message."""

    detail: str


class HealthResponse(BaseModel):
    """Liveness answer with the model version and the batch limit."""

    status: str
    model_version: str
    max_batch: int
