"""Dramatiq actors and the scheduler (later issues). Not built yet."""
