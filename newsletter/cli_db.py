"""`newsletter db upgrade`: create or upgrade the database's schema (SQLite file or PostgreSQL), printing what it did.

Registered by cli.py (`_register(... _DB_COMMANDS)`); commands get cli's `Context` as the click object.
A PostgreSQL database must be upgraded with this command before anything else runs on a new schema; an
SQLite file also upgrades itself when opened.
"""

from __future__ import annotations

from typing import Any

import click

__all__ = ["COMMANDS", "db_group"]


@click.group(name="db", short_help="Create or upgrade the database's schema.")
def db_group() -> None:
    """The database's schema (Alembic migrations for SQLite and PostgreSQL)."""


@db_group.command(name="upgrade", short_help="Bring the database to this version's schema.")
@click.pass_obj
def upgrade(obj: Any) -> None:
    """Bring the database to the schema this newsletter runs on (safe to run again, and from two places at once)."""
    from .store import open_store

    done = open_store(obj.settings).upgrade()
    if done.changed:
        was = f"revision {done.before}" if done.before else "no schema"
        click.echo(f"{done.where}: upgraded from {was} to {done.after}")
    else:
        click.echo(f"{done.where}: already at {done.after}, nothing to do")


COMMANDS: list[click.Command] = [db_group]
