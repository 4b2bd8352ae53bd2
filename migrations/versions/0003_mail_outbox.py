"""Mail outbox: mail written in the transaction that causes it, delivered afterwards.

Revision ID: 0003
Revises: 0002
"""

from migrations.sqlfile import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0003_mail_outbox.up.sql")


def downgrade() -> None:
    run_sql_file("0003_mail_outbox.down.sql")
