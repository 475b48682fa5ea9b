"""Shared fixtures: a throw-away copy of the sample project, loaded settings, the session's PostgreSQL and
chromium, cheap password hashes, the test web servers stopped at the end; test folders in memory."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATE = "2026-11-25"

#: Test folders (tmp_path) go under this memory filesystem when it is there and roomy, unless --basetemp
#: is given or NEWSLETTER_TEST_TMP=disk is set.
MEMORY_FS = Path("/dev/shm")
_MEMORY_FS_MIN_FREE = 2 * 1024**3


def pytest_configure(config: pytest.Config) -> None:
    """tmp_path on a memory filesystem (tmpfs): every test writes real files and real SQLite databases, and
    on a disk each commit and close waits for fsync, which on a shared, busy machine costs more than the work
    itself (as the test PostgreSQL runs with fsync=off). What the files hold is the same."""
    import os
    import tempfile

    if config.option.basetemp is not None or os.environ.get("NEWSLETTER_TEST_TMP") == "disk":
        return
    if hasattr(config, "workerinput"):  # an xdist worker: its controller chose the folder
        return
    try:
        roomy = shutil.disk_usage(MEMORY_FS).free >= _MEMORY_FS_MIN_FREE and os.access(MEMORY_FS, os.W_OK)
    except OSError:
        return
    if roomy:
        config.option.basetemp = tempfile.mkdtemp(prefix="newsletter-tests-", dir=MEMORY_FS)
        config.stash[_MEMORY_BASETEMP] = Path(config.option.basetemp)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Free the memory the test folders took (pytest keeps no old runs of a --basetemp of ours)."""
    folder = config.stash.get(_MEMORY_BASETEMP, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


_MEMORY_BASETEMP = pytest.StashKey[Path]()


def sample_project(root: Path) -> Path:
    """The bundled sample content, templates and settings copied into `root` (made), with no issues yet."""
    root.mkdir(parents=True)
    shutil.copytree(REPO / "content", root / "content")
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    (root / "issues").mkdir()
    return root


def built_sample(root: Path, *, limit: int | None = None, write: bool = True):  # type: ignore[no-untyped-def]
    """The sample issue of SAMPLE_DATE composed and built in a fresh sample project at `root`; its BuildResult.

    For module-scoped fixtures whose tests only read what was built (an email, its files): one build per
    module instead of one per test. A test that changes the issue or its files builds its own.
    """
    import datetime as dt

    from newsletter.jobs.issues import build, compose

    site = sample_project(root)
    settings = load_settings(site / "newsletter.toml", env={"NEWSLETTER_SECRET": "test-secret-not-for-production-use"})
    issue = compose(settings, date=dt.date.fromisoformat(SAMPLE_DATE), limit=limit)
    return build(settings, issue.folder, write=write)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundled sample content, templates and settings in a fresh folder with no issues yet."""
    root = sample_project(tmp_path / "site")
    monkeypatch.chdir(root)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    monkeypatch.delenv("NEWSLETTER_TRANSPORT", raising=False)
    monkeypatch.setenv("NEWSLETTER_SECRET", "test-secret-not-for-production-use")
    return root


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project / "newsletter.toml", env={"NEWSLETTER_SECRET": "test-secret-not-for-production-use"})


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL cluster for the session; skips with the reason, fails if CI requires it."""
    import os

    from pg_server import PostgresUnavailable, postgres_instance

    try:
        with postgres_instance() as instance:
            yield instance
    except PostgresUnavailable as exc:
        if os.environ.get("NEWSLETTER_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{exc} (NEWSLETTER_REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(str(exc))


@contextlib.contextmanager
def throwaway_database(server, prefix: str, label: str = "", *, template: str | None = None) -> Iterator[str]:
    """A fresh database on the session's cluster (empty, or a copy of `template`), named after `label`, dropped
    afterwards; yields its name (`server.url(name)` is its URL)."""
    import re
    import uuid

    import psycopg

    name = prefix + re.sub(r"[^a-z0-9]", "_", label.lower())[:40] + "_" + uuid.uuid4().hex[:8]
    admin = server.url("postgres")
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    yield name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database on the session's cluster for one test (dropped afterwards)."""
    with throwaway_database(postgres_server, "t_", request.node.name) as name:
        yield postgres_server.url(name)


@pytest.fixture(scope="module")
def postgres_module_url(postgres_server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database on the session's cluster shared by one test module (dropped afterwards):
    for module-scoped fixtures that set a site up once and reset what the tests change."""
    with throwaway_database(postgres_server, "m_", request.module.__name__) as name:
        yield postgres_server.url(name)


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashes():
    """argon2id with the lowest cost for the desk's accounts in tests: each sign-in is one hash check.

    The default (DEFAULT_HASHER, checked in test_desk_access) makes guessing slow on purpose: about 0.1 s
    and 64 MiB per check, and up to 0.5 s on a busy 2-core machine, for hundreds of sign-ins here.
    """
    from argon2 import PasswordHasher

    from newsletter.jobs import accounts

    previous = accounts.use_hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    yield
    accounts.use_hasher(previous)


@pytest.fixture(scope="session", autouse=True)
def _uvicorn_servers_stopped():
    """Every test Uvicorn server (tests/web_server.py) has finished stopping when the session ends."""
    yield
    from web_server import finish_stopping

    finish_stopping()


@pytest.fixture(scope="module")
def browser():
    """One headless chromium (Debian's) per browser test module; each test opens its own pages.

    Skips with the reason when chromium cannot start, or fails when CI requires it (NEWSLETTER_REQUIRE_BROWSER=1).
    Per module, not per session: playwright's sync API keeps an event loop that should not outlive the
    browser tests into the rest of the suite.
    """
    import contextlib
    import os

    from newsletter.browser import BrowserUnavailable, open_browser

    with contextlib.ExitStack() as stack:
        try:
            opened = stack.enter_context(open_browser())
        except BrowserUnavailable as exc:
            if os.environ.get("NEWSLETTER_REQUIRE_BROWSER") == "1":
                pytest.fail(f"{exc} (NEWSLETTER_REQUIRE_BROWSER=1)", pytrace=False)
            pytest.skip(str(exc))
        yield opened
