"""Shared by the desk tests: a sample site with desk accounts, a real Uvicorn server, signing in with httpx.

The fixtures `site` (a private copy of the test module's `prepared` site) and `server` (that copy served)
are imported by the test modules, which define `prepared`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import html as html_lib
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web_server import running
from http_client import TLS

from newsletter.jobs import accounts
from newsletter.serve import create_app
from newsletter.store import sqlite as sqlite_store, subscribers
from newsletter.settings import Settings, load_settings

__all__ = ["SECRET", "DATE", "EDITOR", "APPROVER", "APPROVER2", "make_site", "load_site", "copy_site", "running",
           "csrf_for", "field_value", "sign_in", "site", "server", "person", "db"]

REPO = Path(__file__).resolve().parent.parent
SECRET = "test-secret-not-for-production-use"
DATE = dt.date(2026, 11, 25)
EDITOR = ("edith@example.org", "Edith Editor", "editor", "edith's long password")
APPROVER = ("arno@example.org", "Arno Approver", "approver", "arno's long password")
APPROVER2 = ("bea@example.org", "Bea Approver", "approver", "bea's long password")


def make_site(root: Path, *, accounts_: tuple[tuple[str, str, str, str], ...] = (EDITOR, APPROVER, APPROVER2),
              public: str = "http://127.0.0.1/newsletter") -> Settings:
    """The bundled sample content in `root`, its subscribers imported, the given desk accounts created."""
    root.mkdir(parents=True)
    for folder in ("content", "templates"):
        shutil.copytree(REPO / folder, root / folder)
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    (root / "issues").mkdir()
    settings = load_site(root, public=public)
    with contextlib.closing(sqlite_store.connect(settings.path(settings.database))) as conn:
        subscribers.import_csv(conn, root / "content" / "subscribers.csv")
    for email, name, role, password in accounts_:
        accounts.add(settings, email, name=name, role=role, password=password)
    return settings


def load_site(root: Path, *, public: str = "http://127.0.0.1/newsletter") -> Settings:
    return dataclasses.replace(load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": SECRET}),
                               public_base_url=public)


def copy_site(template: Path, target: Path) -> Settings:
    """A private copy of a prepared site (files and database), so tests never share state."""
    shutil.copytree(template, target)
    return load_site(target)


@pytest.fixture
def site(prepared: Path, tmp_path: Path) -> Settings:
    """A private copy of the test module's `prepared` site."""
    return copy_site(prepared, tmp_path / "site")


@pytest.fixture
def server(site: Settings) -> Iterator[str]:
    """`site`'s desk and public pages served; yields the base URL."""
    with running(create_app(site)) as url:
        yield url


@contextlib.contextmanager
def person(server: str, who: tuple[str, str, str, str]) -> Iterator[httpx.Client]:
    """An httpx client signed in as `who`."""
    with httpx.Client(verify=TLS, base_url=server, timeout=30) as client:
        assert sign_in(client, who).status_code == 303
        yield client


def db(settings: Settings) -> sqlite3.Connection:
    """A plain sqlite3 connection to the site's database, rows by column name."""
    conn = sqlite3.connect(settings.path(settings.database))
    conn.row_factory = sqlite3.Row
    return conn


def csrf_for(page: str, action: str) -> str:
    """The CSRF field of the form on `page` that posts to `action`."""
    for match in re.finditer(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', page, re.S):
        if html_lib.unescape(match.group(1)) == action:
            field = re.search(r'name="csrf" value="([^"]+)"', match.group(2))
            assert field, match.group(0)
            return field.group(1)
    raise AssertionError(f"no form posting to {action} on the page:\n{page[:3000]}")


def field_value(page: str, name: str) -> str:
    found = re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]*)"', page)
    assert found, f"no field {name}"
    return html_lib.unescape(found.group(1))


def sign_in(client: httpx.Client, who: tuple[str, str, str, str], *, password: str | None = None) -> httpx.Response:
    page = client.get("/desk/login").text
    return client.post("/desk/login", data={"csrf": csrf_for(page, "/desk/login"), "email": who[0],
                                            "password": password if password is not None else who[3], "next": ""})
