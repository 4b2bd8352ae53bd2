"""Identity and access: users, memberships, invitations, sessions, API keys, idempotency.

Revision ID: 0002
Revises: 0001
"""

from migrations.sqlfile import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0002_identity_access.up.sql")


def downgrade() -> None:
    run_sql_file("0002_identity_access.down.sql")
