"""Billing: subscriptions, billing periods, prices, invoices, payment events and the export ledger.

Revision ID: 0013
Revises: 0012
"""

from migrations.sqlfile import run_sql_file

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0013_billing.up.sql")


def downgrade() -> None:
    run_sql_file("0013_billing.down.sql")
