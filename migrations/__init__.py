"""Alembic environment and versioned revisions; each revision runs SQL files from sql/versions/."""
