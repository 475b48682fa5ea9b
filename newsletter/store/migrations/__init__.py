"""Alembic's migrations for both stores: env.py and one revision chain in versions/ (see newsletter.store.migrate)."""
