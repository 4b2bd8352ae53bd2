"""Tenant lifecycle: the tombstones erased tenants leave behind.

Revision ID: 0014
Revises: 0013
"""

from migrations.sqlfile import run_sql_file

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0014_lifecycle.up.sql")


def downgrade() -> None:
    run_sql_file("0014_lifecycle.down.sql")
