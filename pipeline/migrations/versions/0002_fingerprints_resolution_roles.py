"""Content fingerprints, resolved and truncated dead letters, least-privilege grants.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APP_ROLE = "txcat_app"  # the pipeline: DML on its tables, no DDL
ANALYST_ROLE = "txcat_analyst"  # read-only: the view and the dead letters
_TABLES = "transactions, categorisations, dead_letters, pipeline_runs"


def upgrade() -> None:
    op.add_column("transactions", sa.Column("content_sha256", sa.Text(), nullable=True))
    op.add_column("dead_letters", sa.Column("payload_bytes", sa.BigInteger(), nullable=True))
    op.add_column("dead_letters", sa.Column("payload_sha256", sa.Text(), nullable=True))
    op.add_column(
        "dead_letters", sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index("dead_letters_transaction_id_idx", "dead_letters", ["transaction_id"])
    # Roles are cluster-wide and created by the deployment (compose init, the native stack);
    # a database without them (tests, a laptop) is migrated all the same.
    op.execute(
        f"""
        DO $$
        BEGIN
          IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            GRANT SELECT, INSERT, UPDATE, DELETE ON {_TABLES} TO {APP_ROLE};
            GRANT USAGE, SELECT ON SEQUENCE dead_letters_id_seq TO {APP_ROLE};
            GRANT SELECT ON alembic_version, categorised_transactions TO {APP_ROLE};
            -- Tables and sequences later migrations create (as the role running them).
            ALTER DEFAULT PRIVILEGES IN SCHEMA public
              GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE};
            ALTER DEFAULT PRIVILEGES IN SCHEMA public
              GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE};
          END IF;
          IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{ANALYST_ROLE}') THEN
            GRANT SELECT ON categorised_transactions, dead_letters TO {ANALYST_ROLE};
          END IF;
        END $$;
        """
    )


def downgrade() -> None:
    op.drop_index("dead_letters_transaction_id_idx", table_name="dead_letters")
    op.drop_column("dead_letters", "resolved_at")
    op.drop_column("dead_letters", "payload_sha256")
    op.drop_column("dead_letters", "payload_bytes")
    op.drop_column("transactions", "content_sha256")
