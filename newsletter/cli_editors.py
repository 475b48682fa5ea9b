"""The accounts edge: `newsletter editors add|list|remove|passwd` for the web desk.

Registered by cli.py like cli_schedule; the commands get cli's `Context` as the click object.
Passwords come from a hidden prompt (typed twice) or, with --password-stdin, the first line of
standard input; they are never printed, logged or accepted as an argument (shell history, `ps`).
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

__all__ = ["COMMANDS", "editors_group"]

console = Console(highlight=False, soft_wrap=True)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password"))


@click.group(name="editors")
def editors_group() -> None:
    """Manage the web desk's accounts.

    On the desk (/desk/ on `newsletter serve`) editors compose, edit, preview and send themselves
    proofs; approvers can also approve, schedule and send.
    """


@editors_group.command(name="add")
@click.argument("email")
@click.option("--name", required=True, help="The person's name, shown in the audit log.")
@click.option("--role", type=click.Choice(["editor", "approver"]), required=True,
              help="editor: compose, edit, preview, proof. approver: also approve, schedule and send.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.pass_obj
def editors_add(obj: Any, email: str, name: str, role: str, password_stdin: bool) -> None:
    """Create a desk account for EMAIL."""
    from .jobs.accounts import add

    row = add(obj.settings, email, name=name, role=role, password=_password(password_stdin))
    console.print(f"Added {row.name} <{row.email}> as {row.role}. They sign in at /desk/login.", markup=False)


@editors_group.command(name="list")
@click.pass_obj
def editors_list(obj: Any) -> None:
    """Every desk account (never a password)."""
    from .jobs.accounts import list_editors

    rows = list_editors(obj.settings)
    table = Table("email", "name", "role")
    for row in rows:
        table.add_row(row.email, row.name, row.role)
    console.print(table)
    console.print(f"{len(rows)} account(s)")


@editors_group.command(name="remove")
@click.argument("email")
@click.pass_obj
def editors_remove(obj: Any, email: str) -> None:
    """Delete EMAIL's account and sign it out everywhere (its audit entries stay)."""
    from .jobs.accounts import remove

    remove(obj.settings, email)
    console.print(f"Removed the account of {email}.", markup=False)


@editors_group.command(name="passwd")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the new password from the first line of standard input.")
@click.pass_obj
def editors_passwd(obj: Any, email: str, password_stdin: bool) -> None:
    """Set a new password for EMAIL; every open session of that account ends."""
    from .jobs.accounts import change_password

    change_password(obj.settings, email, _password(password_stdin))
    console.print(f"Changed the password of {email}; they must sign in again.", markup=False)


COMMANDS = [editors_group]
