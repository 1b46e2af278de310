"""The categorisation stored with its transaction: one upsert per chunk, no foreign key.

`categorisations` becomes a view of the same columns (readers and the grants they had keep
working); `categorised_transactions` keeps its columns. Existing rows are moved over.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APP_ROLE = "txcat_app"
ANALYST_ROLE = "txcat_analyst"

_VIEW = """
CREATE OR REPLACE VIEW categorised_transactions AS
SELECT t.id AS transaction_id, t.source_id, t.description, t.amount, t.occurred_at,
       t.merchant, t.operation_type, t.side, t.category, t.model_version, t.categorised_at
FROM transactions AS t
WHERE t.category IS NOT NULL
"""
_COMPAT_VIEW = """
CREATE VIEW categorisations AS
SELECT id AS transaction_id, category, model_version, categorised_at
FROM transactions WHERE category IS NOT NULL
"""


def upgrade() -> None:
    op.add_column("transactions", sa.Column("category", sa.Text(), nullable=True))
    op.add_column("transactions", sa.Column("model_version", sa.Text(), nullable=True))
    op.add_column(
        "transactions", sa.Column("categorised_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        """
        UPDATE transactions AS t
        SET category = c.category, model_version = c.model_version,
            categorised_at = c.categorised_at
        FROM categorisations AS c WHERE c.transaction_id = t.id
        """
    )
    op.create_check_constraint(
        "transactions_categorised_check",
        "transactions",
        "(category IS NULL) = (model_version IS NULL)"
        " AND (category IS NULL) = (categorised_at IS NULL)",
    )
    op.execute(_VIEW)
    op.drop_table("categorisations")
    op.execute(_COMPAT_VIEW)
    _grant()


def _grant() -> None:
    # Explicit grants on what this revision creates, whatever the default privileges were.
    op.execute(
        f"""
        DO $$
        BEGIN
          IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            GRANT SELECT, INSERT, UPDATE, DELETE ON transactions, categorisations TO {APP_ROLE};
            GRANT SELECT ON categorised_transactions TO {APP_ROLE};
          END IF;
          IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{ANALYST_ROLE}') THEN
            GRANT SELECT ON categorised_transactions TO {ANALYST_ROLE};
          END IF;
        END $$;
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW categorisations")
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
        sa.Column(
            "categorised_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )
    op.execute(
        """
        INSERT INTO categorisations (transaction_id, category, model_version, categorised_at)
        SELECT id, category, model_version, categorised_at FROM transactions
        WHERE category IS NOT NULL
        """
    )
    op.execute(
        """
        CREATE OR REPLACE VIEW categorised_transactions AS
        SELECT c.transaction_id, t.source_id, t.description, t.amount, t.occurred_at,
               t.merchant, t.operation_type, t.side, c.category, c.model_version,
               c.categorised_at
        FROM categorisations AS c
        JOIN transactions AS t ON t.id = c.transaction_id
        """
    )
    op.drop_constraint("transactions_categorised_check", "transactions")
    for column in ("categorised_at", "model_version", "category"):
        op.drop_column("transactions", column)
    if_app = f"IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN"
    op.execute(
        f"DO $$ BEGIN {if_app} GRANT SELECT, INSERT, UPDATE, DELETE ON categorisations"
        f" TO {APP_ROLE}; END IF; END $$;"
    )
