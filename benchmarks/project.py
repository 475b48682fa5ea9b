"""Throw-away copies of the sample project: composed, built and approved issues, generated subscribers."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / ".work"
DATE = dt.date(2026, 11, 25)
SECRET = "benchmark-secret-not-for-production"
ENV = {"NEWSLETTER_SECRET": SECRET}

__all__ = [
    "DATE",
    "ENV",
    "REPO",
    "SECRET",
    "WORK",
    "compose_and_build",
    "create_database",
    "import_subscribers",
    "make_project",
    "postgres_cluster",
    "python",
    "settings_for",
    "subscriber_rows",
    "temp_dir",
    "write_subscribers",
]


def python() -> str:
    """This interpreter itself: a pyenv shim in front of it would add its own start-up to every process figure."""
    return sys.executable


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    WORK.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=WORK))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _extra_summaries(content: Path, count: int) -> None:
    """`count` more summary files, copies of the samples with new ids and urls (same dates, so all eligible)."""
    samples = sorted(p for p in content.glob("*.md"))
    for n in range(count):
        source = samples[n % len(samples)]
        suffix = n + 1
        new_id = f"{source.stem}-copy{suffix}"
        text = source.read_text(encoding="utf-8")
        text = re.sub(r'^url: "([^"]+)"', f'url: "\\1-copy{suffix}"', text, count=1, flags=re.MULTILINE)
        text = re.sub(r'^title: "([^"]+)"', f'title: "\\1 (part {suffix})"', text, count=1, flags=re.MULTILINE)
        (content / f"{new_id}.md").write_text(text, encoding="utf-8")


def make_project(root: Path, *, extra_summaries: int = 0, transport: str | None = None) -> Path:
    """The bundled content, templates and newsletter.toml copied into `root` (which must not exist yet)."""
    root.mkdir(parents=True)
    shutil.copytree(REPO / "content", root / "content")
    shutil.copytree(REPO / "templates", root / "templates")
    config = (REPO / "newsletter.toml").read_text(encoding="utf-8")
    if transport is not None:
        config = re.sub(r'^transport = ".*"$', f'transport = "{transport}"', config, flags=re.MULTILINE)
    (root / "newsletter.toml").write_text(config, encoding="utf-8")
    (root / "issues").mkdir()
    if extra_summaries:
        _extra_summaries(root / "content", extra_summaries)
    return root


def settings_for(root: Path, **replace: object):  # -> Settings (imported lazily: import cost is measured)
    from newsletter.settings import load_settings

    s = load_settings(root / "newsletter.toml", env=ENV)
    return dataclasses.replace(s, **replace) if replace else s


def compose_and_build(root: Path, *, limit: int, approve: bool = True) -> Path:
    """Compose the sample date with `limit` summaries, build it (and approve it); the issue folder."""
    from newsletter.approval import approve as approve_issue
    from newsletter.jobs.issues import build, compose

    s = settings_for(root, max_age_days=3650)  # the workload needs every sample summary, however old
    issue = compose(s, date=DATE, limit=limit, force=True)
    if len(issue.summaries) != limit:
        raise RuntimeError(f"wanted {limit} summaries, the sample content gave {len(issue.summaries)}")
    build(s, issue.folder)
    if approve:
        approve_issue(issue.folder)
    return issue.folder


_FIRST = ["Amara", "Zoë", "Liam", "Søren", "Priya", "Chen", "Fatima", "José", "Olga", "Noah", "Aoife", "Mateus"]
_LAST = ["Okafor", "Müller", "Smith", "Nguyen", "García", "O'Brien", "Kowalski", "Sato", "Hansen", "Rossi"]


def subscriber_rows(count: int) -> Iterator[tuple[str, str]]:
    """(email, name): a realistic mix, about 1 in 3 names with non-ASCII letters and 1 in 10 without a name."""
    for i in range(1, count + 1):
        name = "" if i % 10 == 0 else f"{_FIRST[i % len(_FIRST)]} {_LAST[(i // 7) % len(_LAST)]}"
        yield f"reader{i:06d}@example.org", name


def write_subscribers(path: Path, count: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name"])
        writer.writerows(subscriber_rows(count))
    return path


def import_subscribers(root: Path, count: int) -> int:
    """Generate `count` subscribers and import them into the project's database; how many were added."""
    from newsletter.store import sqlite as db, subscribers

    s = settings_for(root)
    csv_path = write_subscribers(root / "subscribers.csv", count)
    conn = db.connect(s.path(s.database))
    try:
        return subscribers.import_csv(conn, csv_path).added
    finally:
        conn.close()


@contextmanager
def postgres_cluster(out, section: str) -> Iterator[object | None]:  # type: ignore[no-untyped-def]
    """A throwaway PostgreSQL cluster started as the tests start one (tests/pg_server.py), stopped afterwards;
    None, with the reason printed under `section`, where none can be started."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from pg_server import PostgresUnavailable, postgres_instance
    finally:
        sys.path.pop(0)
    try:
        with postgres_instance() as instance:
            yield instance
    except PostgresUnavailable as exc:
        out(f"  {section}: no PostgreSQL ({exc})")
        yield None


def create_database(instance, name: str) -> str:  # type: ignore[no-untyped-def]
    """A new, empty database `name` on the cluster; its URL."""
    import psycopg

    with psycopg.connect(instance.url("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return str(instance.url(name))
