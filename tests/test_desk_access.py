"""The desk's doors: accounts, sign-in, sessions, CSRF, roles, the two-person rule and the edit conflict.

Each test serves its own copy of the sample site with Uvicorn on 127.0.0.1 and drives it with httpx.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from starlette.routing import Route

from desk_support import (APPROVER, APPROVER2, DATE, EDITOR, SECRET, csrf_for, db, field_value, make_site, person,  # noqa: F401
                          running, server, sign_in, site)
from http_client import TLS
from newsletter.jobs import accounts
from newsletter.store import desk as desk_store
from newsletter.cli import cli
from newsletter.jobs.issues import compose
from newsletter.serve import create_app
from newsletter.settings import Settings
from newsletter.web.desk import PUBLIC_ROUTES
from newsletter.web.security import Csrf
from newsletter.web.desk.auth import SIGNIN_LIMIT_ACCOUNT, SIGNIN_LIMIT_ADDRESS, WRONG, LIMITED

ISSUE = DATE.isoformat()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = make_site(tmp_path_factory.mktemp("desk") / "site")
    compose(settings, date=DATE)
    return settings.root


# --- accounts --------------------------------------------------------------------------------------------

def test_editors_commands_hash_and_never_show_the_password(tmp_path: Path) -> None:
    settings = make_site(tmp_path / "site", accounts_=())
    runner = CliRunner()
    config = ["--config", str(settings.root / "newsletter.toml")]
    password = "a long and secret passphrase"
    added = runner.invoke(cli, [*config, "editors", "add", "Zoe@Example.org", "--name", "Zoe", "--role", "approver",
                                "--password-stdin"], input=password + "\n", obj=None)
    assert added.exit_code == 0, added.output
    assert password not in added.output
    listed = runner.invoke(cli, [*config, "editors", "list"])
    assert "Zoe@example.org" in listed.output and "approver" in listed.output and password not in listed.output
    with contextlib.closing(db(settings)) as conn:
        stored = conn.execute("SELECT password_hash FROM desk_editors").fetchone()[0]
    assert stored.startswith("$argon2id$") and password not in stored
    assert accounts.verify(stored, password) and not accounts.verify(stored, password + "x")
    short = runner.invoke(cli, [*config, "editors", "add", "y@example.org", "--name", "Y", "--role", "editor",
                                "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "at least 12 characters" in str(short.exception or short.output)
    twice = runner.invoke(cli, [*config, "editors", "add", "zoe@example.org", "--name", "Z", "--role", "editor",
                                "--password-stdin"], input=password + "\n")
    assert twice.exit_code == 1
    prompted = runner.invoke(cli, [*config, "editors", "passwd", "zoe@example.org"],
                             input="another long passphrase\nanother long passphrase\n")
    assert prompted.exit_code == 0, prompted.output
    assert "another long passphrase" not in prompted.output
    assert runner.invoke(cli, [*config, "editors", "remove", "zoe@example.org"]).exit_code == 0
    assert accounts.list_editors(settings) == []
    with contextlib.closing(db(settings)) as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM desk_audit ORDER BY id")]
    assert actions == ["account.add", "account.passwd", "account.remove"]


def test_without_accounts_the_desk_only_explains_how_to_start(tmp_path: Path) -> None:
    settings = make_site(tmp_path / "site", accounts_=())
    with running(create_app(settings)) as url, httpx.Client(verify=TLS, base_url=url, timeout=30) as client:
        home = client.get("/desk/")
        assert home.status_code == 200 and "newsletter editors add" in home.text
        assert "Sign in" not in home.text
        login = client.get("/desk/login")
        assert "newsletter editors add" in login.text and 'name="password"' not in login.text
        for path in ("/desk/new", f"/desk/issues/{ISSUE}", "/desk/subscribers", "/desk/audit"):
            response = client.get(path)
            assert response.status_code == 303 and response.headers["location"].startswith("/desk/login")


# --- every route is closed without a session -------------------------------------------------------------

def desk_routes(settings: Settings) -> list[Route]:
    app = create_app(settings)
    return [r for r in app.routes if isinstance(r, Route) and r.path.startswith("/desk")]


def test_every_desk_route_redirects_to_sign_in_without_a_session(site: Settings, server: str) -> None:
    routes = [r for r in desk_routes(site) if r.name not in PUBLIC_ROUTES]
    assert len(routes) >= 15, [r.path for r in routes]  # the list really comes from the app
    checked = 0
    with httpx.Client(verify=TLS, base_url=server, timeout=30) as client:
        for route in routes:
            path = route.path.replace("{issue_id}", ISSUE)
            assert "{" not in path, f"a new path parameter in {route.path}: teach this test a value for it"
            for method in sorted(route.methods or {"GET"}):
                if method == "HEAD":
                    continue
                response = client.request(method, path)
                assert response.status_code == 303, f"{method} {path} answered {response.status_code}"
                assert response.headers["location"].startswith("/desk/login"), f"{method} {path}"
                checked += 1
    assert checked >= len(routes)


def test_the_public_desk_routes_are_only_sign_in_and_its_assets(site: Settings) -> None:
    names = {r.name for r in desk_routes(site)}
    assert PUBLIC_ROUTES <= names and PUBLIC_ROUTES == {"desk_login", "desk_static"}


# --- signing in ------------------------------------------------------------------------------------------

def test_session_cookie_flags(site: Settings, server: str) -> None:
    with httpx.Client(verify=TLS, base_url=server, timeout=30) as client:
        cookie = sign_in(client, EDITOR).headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/desk/" in cookie
    assert "Secure" not in cookie  # public_base_url is http://127.0.0.1 here
    assert "expires" not in cookie.lower() and "max-age" not in cookie.lower()  # gone when the browser closes
    https = dataclasses.replace(site, public_base_url="https://news.example.org/newsletter")
    with running(create_app(https)) as url, httpx.Client(verify=TLS, base_url=url, timeout=30) as client:
        assert "Secure" in sign_in(client, EDITOR).headers["set-cookie"]


def _error_of(page: str) -> str:
    found = re.search(r'<p class="error"[^>]*>(.*?)</p>', page, re.S)
    assert found, page
    return found.group(1).replace("&#39;", "'")


def test_a_wrong_email_and_a_wrong_password_get_the_same_answer(site: Settings, server: str) -> None:
    with httpx.Client(verify=TLS, base_url=server, timeout=30) as client:
        unknown = sign_in(client, ("nobody@example.org", "", "", "whatever password"))
        wrong = sign_in(client, EDITOR, password="not edith's password")
        assert unknown.status_code == wrong.status_code == 400
        assert _error_of(unknown.text) == _error_of(wrong.text) == WRONG
        assert "nl_desk" not in client.cookies
    with contextlib.closing(db(site)) as conn:
        rows = conn.execute("SELECT email_key, ok FROM desk_signin_attempts ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [("nobody@example.org", 0), ("edith@example.org", 0)]


def test_sign_in_attempts_are_limited_per_account(site: Settings, server: str) -> None:
    with httpx.Client(verify=TLS, base_url=server, timeout=30) as client:
        for _ in range(SIGNIN_LIMIT_ACCOUNT):
            assert sign_in(client, EDITOR, password="a wrong password").status_code == 400
        blocked = sign_in(client, EDITOR)  # the right password, too late
        assert blocked.status_code == 429 and _error_of(blocked.text) == LIMITED
        assert sign_in(client, APPROVER).status_code == 303  # another account from the same address still works


def test_sign_in_attempts_are_limited_per_address(site: Settings, server: str) -> None:
    with httpx.Client(verify=TLS, base_url=server, timeout=30) as client:
        for n in range(SIGNIN_LIMIT_ADDRESS):
            assert sign_in(client, (f"guess{n}@example.org", "", "", "x" * 12)).status_code == 400
        blocked = sign_in(client, APPROVER)
        assert blocked.status_code == 429 and _error_of(blocked.text) == LIMITED


def test_sign_in_issues_a_fresh_session_id(site: Settings, server: str) -> None:
    with httpx.Client(verify=TLS, base_url=server, timeout=30) as client:
        sign_in(client, EDITOR)
        first = client.cookies.get("nl_desk", path="/desk/")
        assert client.get("/desk/").status_code == 200
        sign_in(client, APPROVER)  # the browser brings the old cookie along: it is not reused
        second = client.cookies.get("nl_desk", path="/desk/")
        assert first and second and first != second
        assert "Arno Approver" in client.get("/desk/").text
    with httpx.Client(verify=TLS, base_url=server, timeout=30) as stale:
        stale.cookies.set("nl_desk", first, path="/desk/")
        assert stale.get("/desk/").status_code == 303  # the session it named ended at the second sign-in
        stale.cookies.set("nl_desk", "made-up-value", path="/desk/")
        assert stale.get("/desk/").status_code == 303


def test_idle_sessions_end(site: Settings, server: str) -> None:
    with person(server, EDITOR) as client:
        assert client.get("/desk/").status_code == 200
        idle = site.desk_idle_minutes * 60 + 5
        with contextlib.closing(db(site)) as conn:
            conn.execute("UPDATE desk_sessions SET last_seen = last_seen - ?", (idle,))
            conn.commit()
        assert client.get("/desk/").status_code == 303
    with contextlib.closing(db(site)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM desk_sessions").fetchone()[0] == 0


def test_sign_out_ends_the_session(site: Settings, server: str) -> None:
    with person(server, EDITOR) as client:
        cookie = client.cookies.get("nl_desk", path="/desk/")
        page = client.get("/desk/").text
        out = client.post("/desk/logout", data={"csrf": csrf_for(page, "/desk/logout")})
        assert out.status_code == 303 and out.headers["location"] == "/desk/login"
    with httpx.Client(verify=TLS, base_url=server, timeout=30) as replay:
        replay.cookies.set("nl_desk", cookie, path="/desk/")
        assert replay.get("/desk/").status_code == 303


def test_changing_a_password_ends_open_sessions(site: Settings, server: str) -> None:
    with person(server, EDITOR) as client:
        accounts.change_password(site, EDITOR[0], "a brand new long password")
        assert client.get("/desk/").status_code == 303


# --- forms -----------------------------------------------------------------------------------------------

def _edit_form(page: str, **changes: str) -> dict[str, object]:
    data: dict[str, object] = {name: field_value(page, name) for name in ("version", "subject", "preheader")}
    data["csrf"] = csrf_for(page, f"/desk/issues/{ISSUE}")
    data["intro"] = re.search(r'<textarea id="intro"[^>]*>(.*?)</textarea>', page, re.S).group(1)  # type: ignore[union-attr]
    data["sid"] = re.findall(r'name="sid" value="([^"]+)"', page)
    data["op"] = "save"
    data.update(changes)
    return data


def test_csrf_is_required_and_bound_to_the_form(site: Settings, server: str) -> None:
    path = f"/desk/issues/{ISSUE}"
    with person(server, EDITOR) as client:
        page = client.get(path).text
        data = _edit_form(page, subject="Changed without a token")
        no_field = {k: v for k, v in data.items() if k != "csrf"}
        assert client.post(path, data=no_field).status_code == 400
        other = dict(data, csrf=csrf_for(page, f"/desk/issues/{ISSUE}/proof"))  # a real token for another form
        assert client.post(path, data=other).status_code == 403
        jar = client.cookies.get("nl_desk", path="/desk/")
    with httpx.Client(verify=TLS, base_url=server, timeout=30) as forged:  # a session but not the CSRF cookie
        forged.cookies.set("nl_desk", jar, path="/desk/")
        assert forged.post(path, data=data).status_code == 403
    assert "Changed without a token" not in (site.root / "issues" / ISSUE / "issue.toml").read_text()


def test_an_editor_cannot_approve_schedule_or_send(site: Settings, server: str) -> None:
    with person(server, EDITOR) as client:
        page = client.get(f"/desk/issues/{ISSUE}").text
        assert "/approve" not in page and "Send now" not in page
        token = field_value(page, "csrf")
        for action in ("approve", "schedule", "cancel", "send"):
            response = client.post(f"/desk/issues/{ISSUE}/{action}", data={"csrf": token})
            assert response.status_code == 403 and "Only an approver" in response.text, action
        assert client.get(f"/desk/issues/{ISSUE}/send").status_code == 403
    assert not (site.root / "issues" / ISSUE / "approval.json").exists()


def test_two_person_approval(site: Settings, server: str) -> None:
    path = f"/desk/issues/{ISSUE}"
    with person(server, APPROVER) as arno:
        page = arno.get(path).text
        assert arno.post(path, data=_edit_form(page, subject="Arno's own subject")).status_code == 303
        page = arno.get(path).text
        assert "someone else must approve it" in page and f"{path}/approve" not in page
        # A valid token for the approve form the page no longer offers: the server must still refuse.
        token = Csrf(SECRET).field(arno.cookies.get("nl_csrf").partition(".")[0], f"desk:approve:{ISSUE}")
        refused = arno.post(f"{path}/approve", data={"csrf": token})
        assert refused.status_code == 409 and "someone else must approve it" in refused.text
    assert not (site.root / "issues" / ISSUE / "approval.json").exists()
    with person(server, APPROVER2) as bea:
        page = bea.get(path).text
        approved = bea.post(f"{path}/approve", data={"csrf": csrf_for(page, f"{path}/approve")})
        assert approved.status_code == 303
    approval = json.loads((site.root / "issues" / ISSUE / "approval.json").read_text())
    with contextlib.closing(db(site)) as conn:
        row = conn.execute("SELECT * FROM desk_audit WHERE action = 'approve'").fetchone()
    assert row["editor_name"] == "Bea Approver <bea@example.org>" and row["version"] == approval["sha256"]
    assert approval["approved_by"] == "Bea Approver <bea@example.org>"


def test_two_person_rule_can_be_switched_off(site: Settings) -> None:
    solo = dataclasses.replace(site, two_person_approval=False)
    path = f"/desk/issues/{ISSUE}"
    with running(create_app(solo)) as url, person(url, APPROVER) as arno:
        page = arno.get(path).text
        arno.post(path, data=_edit_form(page, subject="Arno alone"))
        page = arno.get(path).text
        assert arno.post(f"{path}/approve", data={"csrf": csrf_for(page, f"{path}/approve")}).status_code == 303


def test_a_second_conflicting_save_is_refused(site: Settings, server: str) -> None:
    path = f"/desk/issues/{ISSUE}"
    with person(server, EDITOR) as edith, person(server, APPROVER) as arno:
        edith_page, arno_page = edith.get(path).text, arno.get(path).text
        assert edith.post(path, data=_edit_form(edith_page, subject="Edith's subject")).status_code == 303
        late = arno.post(path, data=_edit_form(arno_page, subject="Arno's subject"))
        assert late.status_code == 409 and "Someone else saved this issue" in late.text
        assert "Arno&#39;s subject" in late.text  # his words are still on the page to copy
    saved = (site.root / "issues" / ISSUE / "issue.toml").read_text()
    assert "Edith's subject" in saved and "Arno's subject" not in saved
    with contextlib.closing(db(site)) as conn:
        edits = conn.execute("SELECT editor_name FROM desk_audit WHERE action = 'edit'").fetchall()
    assert [r[0] for r in edits] == ["Edith Editor <edith@example.org>"]


def test_errors_are_shown_beside_their_field_and_nothing_is_saved(site: Settings, server: str) -> None:
    path = f"/desk/issues/{ISSUE}"
    before = (site.root / "issues" / ISSUE / "issue.toml").read_text()
    with person(server, EDITOR) as client:
        page = client.get(path).text
        response = client.post(path, data=_edit_form(page, subject="x" * 90))
        assert response.status_code == 400
        assert re.search(r'id="subject"[^>]*aria-describedby="subject-hint subject-error"', response.text)
        assert 'id="subject-error">The subject has 90 characters' in response.text
    assert (site.root / "issues" / ISSUE / "issue.toml").read_text() == before


def test_audit_log_records_sign_in(site: Settings, server: str) -> None:
    with person(server, EDITOR) as client:
        page = client.get("/desk/audit").text
    assert "signin" in page and "Edith Editor" in page
    with contextlib.closing(db(site)) as conn:
        assert desk_store.audit_entries(conn)[0].action == "signin"


def test_the_desk_hashes_with_argon2ids_default_cost() -> None:
    """The tests sign in with a cheap hasher (conftest's cheap_password_hashes); the desk itself does not."""
    from argon2 import Type, extract_parameters
    from argon2.profiles import RFC_9106_LOW_MEMORY

    strong = accounts.DEFAULT_HASHER
    assert strong.type is Type.ID
    assert (strong.time_cost, strong.memory_cost, strong.parallelism) >= (
        RFC_9106_LOW_MEMORY.time_cost, RFC_9106_LOW_MEMORY.memory_cost, RFC_9106_LOW_MEMORY.parallelism)
    cheap = accounts.use_hasher(strong)
    try:
        stored = accounts.hash_password("a long and secret passphrase")  # one strong hash and one check: ~0.2 s
    finally:
        accounts.use_hasher(cheap)
    made = extract_parameters(stored)
    assert (made.type, made.time_cost, made.memory_cost) == (Type.ID, strong.time_cost, strong.memory_cost)
    assert accounts.verify(stored, "a long and secret passphrase")
    assert not accounts.verify_or_pad(None, "a long and secret passphrase")  # no account: padded, refused
