"""Alembic environment: runs revisions on the connection db.migrate hands over, or, in
offline mode (`tenantry db migrate --dry-run`, db.migrate.dry_run), writes their SQL to
the config's output buffer without connecting."""

from alembic import context

if context.is_offline_mode():
    # no BEGIN/COMMIT here: db.migrate.dry_run wraps the revisions and the repeatable
    # files in the one transaction `migrate` runs them in
    context.configure(dialect_name="postgresql", transactional_ddl=False)
else:
    context.configure(connection=context.config.attributes["connection"], transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
