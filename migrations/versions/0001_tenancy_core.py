"""Tenancy core: schemas, plans, tenants, projects, tasks.

Revision ID: 0001
Revises:
"""

from migrations.sqlfile import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0001_tenancy_core.up.sql")


def downgrade() -> None:
    run_sql_file("0001_tenancy_core.down.sql")
