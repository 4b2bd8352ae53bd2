"""Analytics schema: per-tenant analytics rollup tables (views and materialized views live in repeatable SQL).

Revision ID: 0012
Revises: 0011
"""

from migrations.sqlfile import run_sql_file

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0012_analytics.up.sql")


def downgrade() -> None:
    run_sql_file("0012_analytics.down.sql")
