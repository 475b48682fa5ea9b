"""Shared by the desk tests: a sample site with two desk accounts, a real Uvicorn server, signing in with httpx."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import html as html_lib
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette

from newsletter.jobs import accounts
from newsletter.store import sqlite as db, subscribers
from newsletter.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SECRET = "test-secret-not-for-production"
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
    with contextlib.closing(db.connect(settings.path(settings.database))) as conn:
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


@contextlib.contextmanager
def running(app: Starlette, **options: object) -> Iterator[str]:
    """Serve `app` with Uvicorn on an ephemeral 127.0.0.1 port in a thread; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", **options)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


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
