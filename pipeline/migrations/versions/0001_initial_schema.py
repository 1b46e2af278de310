"""Initial schema: transactions, categorisations, dead letters, pipeline runs and the view.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "transactions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(16, 2), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merchant", sa.Text(), nullable=True),
        sa.Column("operation_type", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("side IN ('debit', 'credit')", name="transactions_side_check"),
    )
    op.create_table(
        "categorisations",
        sa.Column(
            "transaction_id",
            sa.Uuid(),
            sa.ForeignKey("transactions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("categorised_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),  # bigserial
        sa.Column("dedup_key", sa.Text(), nullable=False, unique=True),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_position", sa.Text(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("partition", sa.Integer(), nullable=True),
        sa.Column("offset", sa.BigInteger(), nullable=True),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("replays", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("redrive_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("redriven_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'redriven', 'resolved', 'quarantined')",
            name="dead_letters_status_check",
        ),
    )
    op.create_index("dead_letters_status_reason_idx", "dead_letters", ["status", "reason"])
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        *(
            sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text("0"))
            for name in ("rows_read", "valid", "categorised", "already_stored", "rejected")
        ),
        *(
            sa.Column(name, postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'"))
            for name in ("rejected_by_reason", "categories", "warnings", "params")
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed')", name="pipeline_runs_status_check"
        ),
    )
    op.create_index("pipeline_runs_started_at_idx", "pipeline_runs", ["started_at"])
    op.execute(
        """
        CREATE VIEW categorised_transactions AS
        SELECT c.transaction_id, t.source_id, t.description, t.amount, t.occurred_at,
               t.merchant, t.operation_type, t.side, c.category, c.model_version,
               c.categorised_at
        FROM categorisations AS c
        JOIN transactions AS t ON t.id = c.transaction_id
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW categorised_transactions")
    op.drop_table("pipeline_runs")
    op.drop_table("dead_letters")
    op.drop_table("categorisations")
    op.drop_table("transactions")
