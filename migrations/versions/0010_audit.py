"""Immutable audit log: partitioned, distributed audit rows and the per-tenant seal chain.

Revision ID: 0010
Revises: 0009
"""

from migrations.sqlfile import run_sql_file

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0010_audit.up.sql")


def downgrade() -> None:
    run_sql_file("0010_audit.down.sql")
