"""Greetings use a stored first name, never a guess from the full name; no name rather than a wrong one."""

from __future__ import annotations

import mailbox
import subprocess
from pathlib import Path

from cli_inprocess import run_newsletter

from newsletter.store import sqlite as db, subscribers


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`newsletter ARGS` in `project` (in this process: see cli_inprocess)."""
    return run_newsletter(args, cwd=project)


def _greetings(project: Path) -> dict[str, str]:
    out = {}
    for msg in mailbox.Maildir(project / "outbox", create=False):
        text = msg.get_payload()[0].get_payload(decode=True).decode()
        line = next(x for x in text.splitlines() if x.startswith("Hello"))
        out[msg["To"].split("<")[-1].rstrip(">")] = line
    return out


def test_csv_first_name_column_drives_the_greeting(project: Path) -> None:
    people = project / "people.csv"
    people.write_text("email,name,first_name\nj.doe@example.org,\"Doe, Jane\",Jane\n"
                      "li.wei@example.org,Li Wei,Wei\nno.first@example.org,\"Smith, Ann\",\n")
    assert run(project, "subscribers", "import", str(people)).returncode == 0
    for step in (["compose", "--date", "2026-11-25"], ["build", "issues/2026-11-25"], ["approve", "issues/2026-11-25"],
                 ["send", "issues/2026-11-25"]):
        r = run(project, *step)
        assert r.returncode == 0, (step, r.stderr)
    assert _greetings(project) == {"j.doe@example.org": "Hello Jane,", "li.wei@example.org": "Hello Wei,",
                                   "no.first@example.org": "Hello,"}


def test_add_and_migrate(project: Path, tmp_path: Path) -> None:
    r = run(project, "subscribers", "add", "ann@example.org", "--name", "Ann Lee", "--first-name", "Ann")
    assert r.returncode == 0, r.stderr
    conn = db.connect(project / "var" / "newsletter.sqlite3")
    assert subscribers.find(conn, "ann@example.org").first_name == "Ann"  # type: ignore[union-attr]
    conn.close()
    # A database from before first names (schema 1: no first_name column) gains it and keeps its people.
    old = tmp_path / "v1.sqlite3"
    conn = db.connect(old)
    conn.execute("ALTER TABLE subscribers DROP COLUMN first_name")
    conn.execute("INSERT INTO subscribers (email, email_key, name, status) VALUES ('b@example.org', 'b@example.org', "
                 "'Doe, Bo', 'subscribed')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    conn = db.connect(old)
    found = subscribers.find(conn, "b@example.org")
    conn.close()
    assert found is not None and found.name == "Doe, Bo" and found.first_name == ""


def test_semicolon_csv_with_a_bom_as_excel_saves_it(project: Path) -> None:
    people = project / "people.csv"
    people.write_bytes("\ufeffEmail;Name;First name\r\nzoe@example.org;Müller, Zoë;Zoë\r\n"
                       "\"ann@example.org\";\"Lee; Ann\";Ann\r\n".encode("utf-8"))
    r = run(project, "subscribers", "import", str(people))
    assert r.returncode == 0, r.stderr
    assert "2 added" in r.stdout
    conn = db.connect(project / "var" / "newsletter.sqlite3")
    zoe, ann = subscribers.find(conn, "zoe@example.org"), subscribers.find(conn, "ann@example.org")
    conn.close()
    assert zoe is not None and (zoe.name, zoe.first_name) == ("Müller, Zoë", "Zoë")
    assert ann is not None and (ann.name, ann.first_name) == ("Lee; Ann", "Ann")
    tabs = project / "tabs.tsv"
    tabs.write_text("email\tname\nbo@example.org\tBo\n")
    r = run(project, "subscribers", "import", str(tabs))
    assert r.returncode == 0 and "1 added" in r.stdout, r.stderr
