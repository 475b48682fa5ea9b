"""Serving on several processes: two `newsletter serve` processes over one database behave as one site.

A request may reach either process (two hosts behind a proxy, `uvicorn --workers`), so whatever one of
them counted or remembered must hold on the other: the subscribe form's rate limit, CSRF forms, desk
sessions and the desk's unsaved draft previews. One client (one cookie jar, as one browser behind one
proxy) talks to both processes in turn.
"""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from desk_support import APPROVER, DATE, EDITOR, copy_site, csrf_for, field_value, make_site
from serve_processes import (SECRET, STORES, postgres_site, serve_processes, server_logs, worker_pids,
                             workers_on_one_port, write_config)
from http_client import TLS
from newsletter.jobs.issues import compose
from newsletter.settings import Settings
from newsletter.store import open_store, subscribers
from newsletter.tokens import make_token

ISSUE = DATE.isoformat()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shared") / "site"
    make_site(root, accounts_=(EDITOR, APPROVER))
    write_config(root)
    return root


@pytest.fixture(params=STORES)
def site(request: pytest.FixtureRequest, prepared: Path, tmp_path: Path) -> Iterator[Settings]:
    """A private copy of the prepared site, its database a SQLite file or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield copy_site(prepared, tmp_path / "site")
        return
    yield from postgres_site(prepared, tmp_path / "site", request.getfixturevalue("postgres_url"),
                             accounts_=(EDITOR, APPROVER))


@pytest.fixture(scope="module", params=STORES)
def shared_site(request: pytest.FixtureRequest, prepared: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One copy of the prepared site per store for the tests below that share two serving processes."""
    root = tmp_path_factory.mktemp(f"shared-{request.param}") / "site"
    if request.param == "sqlite":
        yield copy_site(prepared, root)
        return
    yield from postgres_site(prepared, root, request.getfixturevalue("postgres_module_url"),
                             accounts_=(EDITOR, APPROVER))


@pytest.fixture(scope="module")
def shared_two(shared_site: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """Two serving processes over `shared_site`, started once per store; yields their logs folder and URLs."""
    logs = tmp_path_factory.mktemp("serve-logs")
    with serve_processes(shared_site.root / "newsletter.toml", 2, logs=logs) as urls:
        yield logs, urls


#: What the web app keeps in the database across requests and processes: rate-limit hits, unsaved draft
#: previews, sign-in attempts and desk sessions. Each test below starts with none of it.
_WEB_STATE_TABLES = ("web_rate_hits", "web_drafts", "desk_signin_attempts", "desk_sessions")


def _forget_web_state(settings: Settings) -> None:
    with open_store(settings).connection() as conn:
        for table in _WEB_STATE_TABLES:
            conn.execute(f"DELETE FROM {table}")
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0
        conn.commit()


@pytest.fixture
def two(shared_site: Settings, shared_two: tuple[Path, list[str]]) -> Iterator[tuple[str, str]]:
    """The two shared serving processes, with no web state left from an earlier test (each test also uses
    subscriber addresses of its own); fails with their output if either wrote a traceback meanwhile."""
    logs, (a, b) = shared_two
    _forget_web_state(shared_site)
    yield a, b
    assert "Traceback" not in server_logs(logs), server_logs(logs)


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(verify=TLS, timeout=30) as client:
        yield client


def _token(settings: Settings, address: str, purpose: str = "unsubscribe") -> str:
    with open_store(settings).connection() as conn:
        who = subscribers.find(conn, address)
    assert who is not None
    return make_token(SECRET, purpose, who.id, who.email)


def _status(settings: Settings, address: str) -> str:
    with open_store(settings).connection() as conn:
        who = subscribers.find(conn, address)
    assert who is not None
    return who.status


def _csrf_field(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:2000]
    return found.group(1)


def test_the_subscribe_limit_counts_hits_on_every_process(two: tuple[str, str], browser: httpx.Client) -> None:
    a, b = two
    codes, retry_after = [], ""
    for n in range(7):
        # The form from one process, the POST to the other: hits alternate between them.
        shown, target = (a, b) if n % 2 == 0 else (b, a)
        field = _csrf_field(browser.get(f"{shown}/subscribe").text)
        answer = browser.post(f"{target}/subscribe", data={"csrf": field, "email": f"reader{n}@example.net",
                                                           "name": f"Reader {n}"})
        codes.append(answer.status_code)
        retry_after = answer.headers.get("retry-after", retry_after)
    # Per-process counters would have let 7 through (4 on one process, 3 on the other).
    assert codes == [200] * 5 + [429] * 2, codes
    assert 590 <= int(retry_after) <= 601  # the window began with the first hit, moments ago


def test_a_csrf_form_from_one_process_is_accepted_by_the_other(shared_site: Settings, two: tuple[str, str],
                                                               browser: httpx.Client) -> None:
    a, b = two
    site = shared_site
    token = _token(site, "amara.okafor@example.org")
    field = _csrf_field(browser.get(f"{a}/unsubscribe/{token}").text)
    forged = field[:-4] + ("AAAA" if not field.endswith("AAAA") else "BBBB")
    refused = browser.post(f"{b}/unsubscribe/{token}", data={"csrf": forged})
    assert refused.status_code == 403 and _status(site, "amara.okafor@example.org") == "subscribed"
    done = browser.post(f"{b}/unsubscribe/{token}", data={"csrf": field})
    assert done.status_code == 200, done.text
    assert _status(site, "amara.okafor@example.org") == "unsubscribed"


def _sign_in(browser: httpx.Client, server: str) -> httpx.Response:
    page = browser.get(f"{server}/desk/login").text
    signed = browser.post(f"{server}/desk/login", data={"csrf": csrf_for(page, "/desk/login"), "email": EDITOR[0],
                                                        "password": EDITOR[3], "next": ""})
    assert signed.status_code == 303
    return signed


def test_a_desk_session_made_on_one_process_holds_on_the_other(two: tuple[str, str], browser: httpx.Client) -> None:
    a, b = two
    signed = _sign_in(browser, a)
    home = browser.get(f"{b}/desk/subscribers")
    assert home.status_code == 200 and EDITOR[1] in home.text  # signed in on A, recognised by B
    # Signing out on B ends the session on A too, even for a kept copy of the cookie.
    page = browser.get(f"{b}/desk/subscribers").text
    assert browser.post(f"{b}/desk/logout", data={"csrf": csrf_for(page, "/desk/logout")}).status_code == 303
    browser.cookies.set("nl_desk", signed.cookies["nl_desk"], domain="127.0.0.1", path="/desk/")
    after = browser.get(f"{a}/desk/subscribers")
    assert after.status_code == 303 and "/desk/login" in after.headers["location"]


def test_a_draft_preview_posted_to_one_process_is_shown_by_the_other(shared_site: Settings, two: tuple[str, str],
                                                                      browser: httpx.Client) -> None:
    a, b = two
    site = shared_site
    compose(site, date=DATE)
    _sign_in(browser, a)
    page = browser.get(f"{b}/desk/issues/{ISSUE}").text
    data: dict[str, object] = {name: field_value(page, name) for name in ("version", "subject", "preheader")}
    data.update(csrf=csrf_for(page, f"/desk/issues/{ISSUE}"), intro="Words posted to one process.",
                sid=re.findall(r'name="sid" value="([^"]+)"', page), op="save")
    assert browser.post(f"{b}/desk/issues/{ISSUE}/draft", data=data).json()["ok"] is True
    assert "Words posted to one process." in browser.get(f"{a}/desk/issues/{ISSUE}/preview?draft=1").text
    assert "Words posted to one process." not in browser.get(f"{a}/desk/issues/{ISSUE}/preview").text


def test_a_second_sign_in_on_the_other_process_is_limited_by_the_first_ones_failures(
        two: tuple[str, str], browser: httpx.Client) -> None:
    a, b = two
    codes = []
    for n in range(6):
        server = (a, b)[n % 2]
        page = browser.get(f"{server}/desk/login").text
        answer = browser.post(f"{server}/desk/login", data={"csrf": csrf_for(page, "/desk/login"),
                                                            "email": EDITOR[0], "password": "wrong password!",
                                                            "next": ""})
        codes.append(answer.status_code)
    assert codes == [400] * 5 + [429], codes
    # The right password is refused too while the account is limited, on either process.
    page = browser.get(f"{b}/desk/login").text
    right = browser.post(f"{b}/desk/login", data={"csrf": csrf_for(page, "/desk/login"), "email": EDITOR[0],
                                                  "password": EDITOR[3], "next": ""})
    assert right.status_code == 429


@pytest.mark.parametrize("command", ["uvicorn", "newsletter"])
def test_workers_on_one_port_count_the_subscribe_limit_together(command: str, site: Settings, tmp_path: Path) -> None:
    """`uvicorn --workers 2` or `newsletter serve --workers 2`: the kernel hands each new connection to
    either worker."""
    def attempt(n: int) -> int:
        # A client of its own, no keep-alive: each request is a new connection, to whichever worker takes it.
        with httpx.Client(verify=TLS, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as one:
            field = _csrf_field(one.get(f"{url}/subscribe").text)
            return one.post(f"{url}/subscribe", data={"csrf": field, "email": f"reader{n}@example.net",
                                                      "name": f"Reader {n}"}).status_code

    log_path = tmp_path / "serve-workers.log"
    codes: list[int] = []
    with workers_on_one_port(command, site.root / "newsletter.toml", 2, logs=tmp_path) as url, \
            ThreadPoolExecutor(8) as pool:
        # Rounds of 24 until both workers have answered some, all within the limit's window. The kernel hands a
        # connection to whichever worker accepts first: on a busy machine one may win a whole round, or several
        # (one worker answered all of five rounds in 0.3 s), so the rounds go on, a moment apart, for up to 30 s.
        deadline, first = time.monotonic() + 30, 0
        while True:
            codes += pool.map(attempt, range(first, first + 24))
            first += 24
            if len(worker_pids(log_path.read_text("utf-8", "replace"), '"POST /subscribe"')) == 2 \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    log = log_path.read_text("utf-8", "replace")
    answered = worker_pids(log, '"POST /subscribe"')
    assert len(answered) == 2, f"only {answered} answered: the hits did not reach both workers\n{log[-3000:]}"
    assert sorted(codes) == [200] * 5 + [429] * (len(codes) - 5), codes
    # Uvicorn's own access log (on by default) is silenced by the factory: ours masks token URLs, it would not.
    assert "Traceback" not in log and "HTTP/1.1" not in log


@pytest.mark.parametrize("site", [pytest.param("sqlite", id="sqlite")], indirect=True)
def test_serve_workers_replace_a_worker_that_dies(site: Settings, tmp_path: Path) -> None:
    with workers_on_one_port("newsletter", site.root / "newsletter.toml", 2, logs=tmp_path) as url:
        log_path = tmp_path / "serve-workers.log"
        started = re.search(r"serving on 2 worker processes: (\d+), (\d+)", log_path.read_text("utf-8"))
        assert started, log_path.read_text("utf-8")
        victim = int(started.group(1))
        time.sleep(5.5)  # a worker that dies at once is not restarted (a crash loop); this one lived
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(worker_pids(log_path.read_text("utf-8"), "signing links")) < 4:  # parent, 2 workers, 1 new
            assert time.monotonic() < deadline, log_path.read_text("utf-8")
            time.sleep(0.1)
        assert f"worker {victim} exited (status -9)" in log_path.read_text("utf-8")
        for _ in range(10):  # every connection is answered, whichever worker takes it
            with httpx.Client(verify=TLS, timeout=30) as one:
                assert one.get(f"{url}/unsubscribe").status_code == 200
