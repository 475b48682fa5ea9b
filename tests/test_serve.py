"""`newsletter serve`: a real Uvicorn server on 127.0.0.1, driven with httpx (and once with headless chromium).

A sample site is composed, built and sent into its Maildir outbox once per module (issue 2026-11-25
sent to the 8 sample subscribers, 2026-11-25-draft built but never sent); each test serves its own
copy, so state changes never leak between tests.
"""

from __future__ import annotations

import dataclasses

import contextlib
import datetime as dt
import email
import email.message
import email.utils
import email.policy
import http.client
import json
import logging
import mailbox
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import feedparser
import httpx
import pytest
from conftest import sample_project
from click.testing import CliRunner
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from web_server import running
from http_client import TLS

from newsletter.store import sqlite as db, subscribers
from newsletter.approval import approve
from newsletter.jobs.delivery import send_full
from newsletter.errors import ConfigError
from newsletter.jobs.issues import build, compose
from newsletter.serve import create_app
from newsletter.settings import Settings, load_settings
from newsletter.tokens import email_digest, make_token
from newsletter.web.security import mask_path

SECRET = "test-secret-not-for-production-use"
DATE = dt.date(2026, 11, 25)
SENT, DRAFT = "2026-11-25", "2026-11-25-draft"
PUBLIC = "https://ms-research.example.org/newsletter"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
NAMES = ("Amara", "Okafor", "Müller", "Doe", "Li Wei", "Taylor", "Gómez", "Priya", "O'Brien", "O&#39;Brien")


# --- the site and the server -----------------------------------------------------------------------

def _settings(root: Path) -> Settings:
    # Two issues of the same date need more than the last 90 days of sample summaries.
    return load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": SECRET}, overrides={"max_age_days": 3650})


@pytest.fixture(scope="module")
def sent_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve") / "site"
    sample_project(root)
    settings = _settings(root)
    sent = compose(settings, date=DATE)
    draft = compose(settings, date=DATE, issue_id=DRAFT)
    build(settings, sent.folder)
    build(settings, draft.folder)
    conn = db.connect(settings.path(settings.database))
    subscribers.import_csv(conn, root / "content" / "subscribers.csv")
    conn.close()
    approve(sent.folder)
    assert send_full(settings, sent.folder).sent == 8
    return root


@pytest.fixture
def site(sent_site: Path, tmp_path: Path) -> Settings:
    shutil.copytree(sent_site, tmp_path / "site")
    return _settings(tmp_path / "site")


@pytest.fixture
def server(site: Settings) -> Iterator[str]:
    with running(create_app(site)) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(verify=TLS, base_url=server, timeout=10) as c:
        yield c


# --- helpers ----------------------------------------------------------------------------------------

def statuses(settings: Settings) -> dict[str, str]:
    with contextlib.closing(db.connect(settings.path(settings.database))) as conn:
        return {s.email: s.status for s in subscribers.list_subscribers(conn)}


def subscriber(settings: Settings, address: str) -> subscribers.Subscriber:
    with contextlib.closing(db.connect(settings.path(settings.database))) as conn:
        found = subscribers.find(conn, address)
    assert found is not None
    return found


def token_for(settings: Settings, address: str, purpose: str = "unsubscribe") -> str:
    who = subscriber(settings, address)
    return make_token(SECRET, purpose, who.id, who.email)


def outbox(settings: Settings) -> list[email.message.EmailMessage]:
    box = mailbox.Maildir(settings.root / "outbox", create=False)
    return [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)  # type: ignore[misc]
            for key in box.keys()]


def confirm_link(settings: Settings, address: str) -> str:
    """The path of the confirm link in the newest confirmation email to `address`."""
    mails = [m for m in outbox(settings) if "confirm" in str(m["Subject"]).lower()
             and m["To"].addresses[0].addr_spec.lower() == address.lower()]
    assert mails, f"no confirmation email to {address}"
    newest = max(mails, key=lambda m: email.utils.parsedate_to_datetime(m["Date"]))
    found = re.search(r"/confirm/\S+", newest.get_body(("plain",)).get_content())
    assert found
    return found.group(0)


def form_of(html: str) -> tuple[str, str]:
    """(action, csrf) of the page's form."""
    action = re.search(r'<form method="post" action="([^"]+)"', html)
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert action and csrf, html
    return action.group(1), csrf.group(1)


def old_signer(age: int) -> type[TimestampSigner]:
    """A signer whose tokens were made `age` seconds ago, as the server's signer would have made them."""

    class Old(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age

    return Old


# --- one-click and the unsubscribe page -------------------------------------------------------------

def test_one_click_from_a_real_message(site: Settings, client: httpx.Client, server: str) -> None:
    (msg,) = [m for m in outbox(site) if m["To"].addresses[0].addr_spec == "amara.okafor@example.org"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.match(r"<([^>]+)>", msg["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
    assert url.startswith(f"{PUBLIC}/unsubscribe/")
    local = server + url.removeprefix(PUBLIC)
    for _ in range(2):  # idempotent: a provider may retry
        r = client.post(local, data=ONE_CLICK)
        assert r.status_code == 200
        assert "You are unsubscribed" in r.text
    after = statuses(site)
    assert after.pop("amara.okafor@example.org") == "unsubscribed"
    assert set(after.values()) == {"subscribed"}


def test_one_click_multipart_body(site: Settings, client: httpx.Client) -> None:
    # RFC 8058 says the POST SHOULD be multipart/form-data.
    boundary = "nl-test-3f2a"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            f"One-Click\r\n--{boundary}--\r\n").encode()
    r = client.post(f"/unsubscribe/{token_for(site, 'li.wei@example.org')}", content=body,
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 200
    assert statuses(site)["li.wei@example.org"] == "unsubscribed"


def test_get_only_shows_a_confirmation(site: Settings, client: httpx.Client) -> None:
    before = statuses(site)
    r = client.get(f"/unsubscribe/{token_for(site, 'priya.nair@example.org')}")
    assert r.status_code == 200
    assert "Unsubscribe?" in r.text and "p•••@example.org" in r.text and "priya.nair" not in r.text
    action, csrf = form_of(r.text)
    assert action == f"/unsubscribe/{token_for(site, 'priya.nair@example.org')}" and csrf
    assert r.cookies.get("nl_csrf") and "samesite=strict" in r.headers["set-cookie"].lower()
    assert client.head(f"/unsubscribe/{token_for(site, 'priya.nair@example.org')}").status_code == 200
    assert statuses(site) == before


def test_form_needs_a_matching_csrf_field_and_cookie(site: Settings, server: str) -> None:
    token = token_for(site, "sam.taylor+newsletter@example.org")
    other = token_for(site, "rafael.gomez@example.org")
    before = statuses(site)
    with httpx.Client(verify=TLS, base_url=server, timeout=10) as browser:
        _, csrf = form_of(browser.get(f"/unsubscribe/{token}").text)
        _, other_csrf = form_of(browser.get(f"/unsubscribe/{other}").text)
        assert browser.post(f"/unsubscribe/{token}").status_code == 400  # no body: not one-click, no field
        assert browser.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "Yes"}).status_code == 400
        assert browser.post(f"/unsubscribe/{token}", data={"csrf": "forged"}).status_code == 403
        assert browser.post(f"/unsubscribe/{token}", data={"csrf": csrf[:-2] + "xx"}).status_code == 403
        r = browser.post(f"/unsubscribe/{token}", data={"csrf": other_csrf})  # made for another token
        assert r.status_code == 403 and "This form has expired" in r.text
        assert statuses(site) == before
    with httpx.Client(verify=TLS, base_url=server, timeout=10) as stranger:  # the field without its cookie
        assert stranger.post(f"/unsubscribe/{token}", data={"csrf": csrf}).status_code == 403
    assert statuses(site) == before
    with httpx.Client(verify=TLS, base_url=server, timeout=10) as browser:
        _, csrf = form_of(browser.get(f"/unsubscribe/{token}").text)
        r = browser.post(f"/unsubscribe/{token}", data={"csrf": csrf})
        assert r.status_code == 200 and "You are unsubscribed" in r.text
        assert statuses(site)["sam.taylor+newsletter@example.org"] == "unsubscribed"
        # The resubscribe offer is a CSRF-protected form too.
        action, csrf = form_of(r.text)
        assert action.startswith("/resubscribe/")
        assert browser.post(action, data={"csrf": "nope"}).status_code == 403
        assert statuses(site)["sam.taylor+newsletter@example.org"] == "unsubscribed"
        r = browser.post(action, data={"csrf": csrf})
        # Resubscribing needs the confirmation email (issue 14, finding 1): the link alone changes nothing.
        assert r.status_code == 200 and "Check your inbox" in r.text
        assert statuses(site)["sam.taylor+newsletter@example.org"] == "unsubscribed"
        link = confirm_link(site, "sam.taylor+newsletter@example.org")
        _, csrf = form_of(browser.get(link).text)
        assert "You are subscribed" in browser.post(link, data={"csrf": csrf}).text
    assert statuses(site) == before


def test_bad_tokens_change_nothing(site: Settings, client: httpx.Client) -> None:
    amara, li = subscriber(site, "amara.okafor@example.org"), subscriber(site, "li.wei@example.org")
    good = make_token(SECRET, "unsubscribe", amara.id, amara.email)
    tampered_sig = good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")
    value, _, rest = good.partition(".")
    bad = {
        "forged": make_token("another-secret", "unsubscribe", amara.id, amara.email),
        "tampered signature": tampered_sig,
        "tampered id": f"{li.id}.{rest}",
        "other purpose": make_token(SECRET, "resubscribe", amara.id, amara.email),
        "someone else's address": make_token(SECRET, "unsubscribe", amara.id, li.email),
        "unknown subscriber": make_token(SECRET, "unsubscribe", 999, "nobody@example.org"),
        "garbage": "not-a-token",
        "too long": "a" * 3000,
    }
    assert value == str(amara.id)
    before = statuses(site)
    for why, token in bad.items():
        r = client.get(f"/unsubscribe/{token}")
        assert r.status_code == 400, why
        assert "not valid" in r.text and "Traceback" not in r.text, why
        assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 400, why
        if why != "other purpose":
            assert client.get(f"/resubscribe/{token}").status_code == 400, why
    assert client.get(f"/resubscribe/{good}").status_code == 400  # an unsubscribe token, not a resubscribe one
    assert statuses(site) == before


def test_expired_resubscribe_and_confirm_links_change_nothing(site: Settings, client: httpx.Client) -> None:
    gone = subscriber(site, "j.doe@example.org")
    with contextlib.closing(db.connect(site.path(site.database))) as conn:
        subscribers.unsubscribe(conn, gone.id)
    old = old_signer(31 * 86400)(SECRET, salt="newsletter.resubscribe")
    resubscribe = old.sign(f"{gone.id}.{email_digest(gone.email)}").decode()
    r = client.get(f"/resubscribe/{resubscribe}")
    assert r.status_code == 400 and "expired" in r.text
    confirm = URLSafeTimedSerializer(SECRET, salt="newsletter.confirm-email",
                                     signer=old_signer(3 * 86400))
    token = confirm.dumps({"email": "late@example.org", "name": ""})
    r = client.get(f"/confirm/{token}")
    assert r.status_code == 400 and "expired" in r.text
    forged = URLSafeTimedSerializer("another-secret", salt="newsletter.confirm-email").dumps({"email": "x@example.org"})
    assert client.get(f"/confirm/{forged}").status_code == 400
    assert "late@example.org" not in statuses(site) and statuses(site)["j.doe@example.org"] == "unsubscribed"


def test_already_unsubscribed_and_the_generic_link(site: Settings, client: httpx.Client) -> None:
    token = token_for(site, "o.brien.family@example.org")
    assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 200
    r = client.get(f"/unsubscribe/{token}")
    assert r.status_code == 200 and "You are already unsubscribed" in r.text and "Resubscribe" in r.text
    # The web version's neutral link: explains, changes nothing.
    r = client.get("/unsubscribe")
    assert r.status_code == 200 and "How to unsubscribe" in r.text and "mailto:" not in r.text  # none configured
    with_mailto = create_app(dataclasses.replace(site, unsubscribe_mailto="unsubscribe@ms-research.example.org"))
    with running(with_mailto) as url, httpx.Client(verify=TLS, base_url=url, timeout=10) as local:
        assert "unsubscribe@ms-research.example.org" in local.get("/unsubscribe").text


# --- the archive ------------------------------------------------------------------------------------

def test_archive_lists_only_sent_issues(site: Settings, client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert f'href="/issues/{SENT}"' in r.text and DRAFT not in r.text
    assert "25 November 2026" in r.text
    assert client.get(f"/issues/{DRAFT}").status_code == 404
    assert client.get("/issues/2026-01-01").status_code == 404


def test_web_version_is_neutral(site: Settings, client: httpx.Client) -> None:
    r = client.get(f"/issues/{SENT}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "__NL_" not in r.text
    assert "Hello," in r.text and not any(name in r.text for name in NAMES)
    assert f'href="{PUBLIC}/unsubscribe"' in r.text and f'href="{PUBLIC}/issues/{SENT}"' in r.text
    assert "/unsubscribe/" not in r.text  # nobody's personal link


@pytest.mark.parametrize("path", [
    "/issues/..", "/issues/%2E%2E", "/issues/..%2F..%2Fnewsletter.toml", "/issues/%2e%2e%2fvar",
    "/issues/../newsletter.toml", "/issues/2026-11-25%2F..%2F..%2Fnewsletter.toml", "/issues/2026-11-25%00",
    "/issues/2026-11-25/build", "/issues/2026-11-25-Draft", "/issues/9999-99-99", "/nowhere",
])
def test_unknown_and_traversing_paths_are_404(server: str, path: str) -> None:
    # http.client sends the path byte for byte (httpx would resolve the dot segments first).
    conn = http.client.HTTPConnection(server.removeprefix("http://"), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    assert response.status == 404, path
    assert "Page not found" in body and "Traceback" not in body and "sender_email" not in body


def test_feed_parses(site: Settings, client: httpx.Client) -> None:
    r = client.get("/feed.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(r.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.feed.title == site.site_name
    (entry,) = feed.entries
    assert entry.link == f"{PUBLIC}/issues/{SENT}" and entry.id == entry.link
    meta = json.loads((site.root / "issues" / SENT / "build" / "build.json").read_text(encoding="utf-8"))
    assert entry.title == meta["subject"] and entry.summary == meta["preheader"]
    assert entry.published_parsed is not None


def test_a_damaged_build_is_not_served(site: Settings, client: httpx.Client) -> None:
    (site.root / "issues" / SENT / "build" / "email.html").write_bytes(b"\xff\xfe broken")
    r = client.get(f"/issues/{SENT}")
    assert r.status_code == 404
    assert "not available" in r.text and "Traceback" not in r.text and "IssueError" not in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert client.get("/").status_code == 200  # the listing only needs build.json


# --- security headers and logging ---------------------------------------------------------------------

def test_security_headers_on_every_response(site: Settings, client: httpx.Client) -> None:
    token = token_for(site, "zoe.mueller@example.org")
    responses = [client.get("/"), client.get(f"/issues/{SENT}"), client.get("/feed.xml"), client.get("/subscribe"),
                 client.get(f"/unsubscribe/{token}"), client.get("/nope"), client.get("/unsubscribe/x.y"),
                 client.post(f"/unsubscribe/{token}", data={"csrf": "x"}), client.delete("/")]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 404, 400, 403, 405]
    for r in responses:
        h = r.headers
        assert h["content-security-policy"] == ("default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
                                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer"
        assert h["x-frame-options"] == "DENY"
    assert responses[4].headers["cache-control"] == "no-store"
    assert "public" in responses[0].headers["cache-control"]


def test_access_log_masks_tokens(site: Settings, client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="newsletter.serve.access")
    token = token_for(site, "zoe.mueller@example.org")
    client.get(f"/unsubscribe/{token}")
    client.post(f"/unsubscribe/{token}", data=ONE_CLICK)
    lines = [r.getMessage() for r in caplog.records if r.name == "newsletter.serve.access"]
    assert '127.0.0.1 "GET /unsubscribe/***" 200' in lines and '127.0.0.1 "POST /unsubscribe/***" 200' in lines
    assert all(token not in r.getMessage() for r in caplog.records)
    assert mask_path(f"/confirm/{token}") == "/confirm/***"


# --- subscribe: double opt-in --------------------------------------------------------------------------

def _subscribe(c: httpx.Client, address: str, name: str = "") -> httpx.Response:
    _, csrf = form_of(c.get("/subscribe").text)
    return c.post("/subscribe", data={"csrf": csrf, "email": address, "name": name})


def test_double_opt_in_round_trip(site: Settings, client: httpx.Client, server: str) -> None:
    before = len(outbox(site))
    r = _subscribe(client, "New.Reader@Example.org", "Ada")
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert "new.reader@example.org" not in {a.lower() for a in statuses(site)}
    messages = outbox(site)
    assert len(messages) == before + 1
    (mail,) = [m for m in messages if m["To"].addresses[0].addr_spec == "New.Reader@example.org"]
    assert mail["From"].addresses[0].addr_spec == site.sender_email and "confirm" in mail["Subject"].lower()
    assert mail["Message-ID"] and mail.get_content_type() == "multipart/alternative"
    text, html = mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()
    link = re.search(rf"{re.escape(PUBLIC)}/confirm/\S+", text).group(0)  # type: ignore[union-attr]
    assert f'href="{link}"' in html
    local = server + link.removeprefix(PUBLIC)
    r = client.get(local)  # what a link scanner does: it must not subscribe
    assert r.status_code == 200 and "Confirm your subscription" in r.text and "greeting you as" in r.text
    assert "New.Reader@example.org" not in statuses(site)
    action, csrf = form_of(r.text)
    assert client.post(server + action, data={}).status_code == 400
    assert "New.Reader@example.org" not in statuses(site)
    r = client.post(server + action, data={"csrf": csrf})
    assert r.status_code == 200 and "You are subscribed" in r.text
    assert statuses(site)["New.Reader@example.org"] == "subscribed"
    assert subscriber(site, "new.reader@example.org").name == "Ada"
    assert client.post(server + action, data={"csrf": csrf}).status_code == 200  # again: no harm


def test_confirming_resubscribes_an_unsubscribed_address(site: Settings, client: httpx.Client, server: str) -> None:
    assert client.post(f"/unsubscribe/{token_for(site, 'li.wei@example.org')}", data=ONE_CLICK).status_code == 200
    assert _subscribe(client, "li.wei@example.org").status_code == 200
    (mail,) = [m for m in outbox(site) if "confirm" in m["Subject"].lower()]
    link = re.search(r"/confirm/\S+", mail.get_body(("plain",)).get_content()).group(0)  # type: ignore[union-attr]
    _, csrf = form_of(client.get(link).text)
    assert client.post(link, data={"csrf": csrf}).status_code == 200
    assert statuses(site)["li.wei@example.org"] == "subscribed"


def test_no_enumeration(site: Settings, server: str) -> None:
    bodies = []
    for address in ("amara.okafor@example.org", "stranger@example.org"):
        with httpx.Client(verify=TLS, base_url=server, timeout=10) as c:
            r = _subscribe(c, address)
            bodies.append((r.status_code, r.text))
    assert bodies[0] == bodies[1] and bodies[0][0] == 200
    assert "stranger@example.org" not in statuses(site)


def test_invalid_address_shows_the_form_again(site: Settings, client: httpx.Client) -> None:
    r = _subscribe(client, "<script>alert(1)</script>")
    assert r.status_code == 400 and 'aria-invalid="true"' in r.text
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;" in r.text


def test_subscribe_is_rate_limited(site: Settings, server: str) -> None:
    with httpx.Client(verify=TLS, base_url=server, timeout=10) as c:
        _, csrf = form_of(c.get("/subscribe").text)
        codes = [c.post("/subscribe", data={"csrf": csrf, "email": f"r{n}@example.org"}).status_code for n in range(6)]
        assert codes == [200] * 5 + [429]
        r = c.post("/subscribe", data={"csrf": csrf, "email": "r9@example.org"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "Too many requests" in r.text
        assert r.headers["x-frame-options"] == "DENY"
        assert c.get("/subscribe").status_code == 200  # only the POST is limited


# --- the edges -------------------------------------------------------------------------------------------

def test_behind_a_proxy_prefix(site: Settings) -> None:
    # nginx `location /newsletter/ { proxy_pass http://127.0.0.1:8080/; }` + `newsletter serve --root-path /newsletter`
    with running(create_app(site), root_path="/newsletter") as url, httpx.Client(verify=TLS, base_url=url, timeout=10) as c:
        token = token_for(site, "priya.nair@example.org")
        r = c.get(f"/unsubscribe/{token}")
        action, csrf = form_of(r.text)
        assert action == f"/newsletter/unsubscribe/{token}" and 'href="/newsletter/"' in r.text
        assert "path=/newsletter" in r.headers["set-cookie"].lower()
        r = c.post(f"/unsubscribe/{token}", data={"csrf": "stale"})
        assert r.status_code == 403 and f'href="/newsletter/unsubscribe/{token}"' in r.text  # "Reload the page"
        r = c.get(f"/unsubscribe/{token}")
        action, csrf = form_of(r.text)
        r = c.post(f"/unsubscribe/{token}", data={"csrf": csrf}, headers={"Cookie": f"nl_csrf={r.cookies['nl_csrf']}"})
        assert r.status_code == 200 and 'action="/newsletter/resubscribe/' in r.text


def test_without_a_secret_the_app_refuses_to_start(site: Settings) -> None:
    import dataclasses

    smtp = dataclasses.replace(site, secret="", transport="smtp://mail.example.org:587")
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET"):
        create_app(smtp)


def test_serve_command_help() -> None:
    from newsletter.cli_serve import COMMANDS, serve_command

    assert COMMANDS == [serve_command]
    r = CliRunner().invoke(serve_command, ["--help"])
    assert r.exit_code == 0
    for option in ("--host", "--port", "--proxy-headers", "--forwarded-allow-ips", "--root-path"):
        assert option in r.output


@pytest.mark.browser
def test_browser_clicks_through_unsubscribe(site: Settings, server: str) -> None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        if os.environ.get("NEWSLETTER_REQUIRE_BROWSER") == "1":
            pytest.fail("NEWSLETTER_REQUIRE_BROWSER=1 but /usr/bin/chromium is missing")
        pytest.skip("Debian's chromium (/usr/bin/chromium) is not installed")
    from playwright.sync_api import expect, sync_playwright

    token = token_for(site, "rafael.gomez@example.org")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 375, "height": 740})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            assert page.goto(f"{server}/unsubscribe/{token}").status == 200  # type: ignore[union-attr]
            expect(page.get_by_role("heading", level=1)).to_have_text("Unsubscribe?")
            assert statuses(site)["rafael.gomez@example.org"] == "subscribed"
            button = page.get_by_role("button", name="Unsubscribe me")
            assert button.bounding_box()["height"] >= 44  # type: ignore[index]
            button.click()
            expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
            assert statuses(site)["rafael.gomez@example.org"] == "unsubscribed"
            page.get_by_role("button", name="Resubscribe").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
            assert statuses(site)["rafael.gomez@example.org"] == "unsubscribed"  # until the email is confirmed
            page.goto(server + confirm_link(site, "rafael.gomez@example.org"))
            page.get_by_role("button", name="Yes, subscribe me").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
            assert statuses(site)["rafael.gomez@example.org"] == "subscribed"
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            assert problems == []  # no CSP violations, nothing broken
        finally:
            browser.close()
