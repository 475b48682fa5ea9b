"""Replays each finding of the outside security audit (issue 14) against the real app, database and transports.

Every test here failed on the code the audit attacked; the finding's number is in the test's name.
Servers are real Uvicorn instances on 127.0.0.1 (the fixtures of test_serve.py).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from pathlib import Path

import httpx
import pytest
from test_serve import (ONE_CLICK, PUBLIC, SECRET, SENT, client, confirm_link, form_of, outbox,  # noqa: F401
                        sent_site, server, site, statuses, subscriber, token_for)
from web_server import running
from http_client import TLS

from newsletter.store import sqlite as db, subscribers
from newsletter.serve import create_app
from newsletter.settings import Settings
from newsletter.web.security import RateLimiter


def _confirmations_to(settings: Settings, address: str) -> int:
    return sum(1 for m in outbox(settings) if "confirm" in str(m["Subject"]).lower()
               and m["To"].addresses[0].addr_spec.lower() == address.lower())


def _set_status(settings: Settings, address: str, status: str) -> None:
    with contextlib.closing(db.connect(settings.path(settings.database))) as conn:
        who = subscribers.find(conn, address)
        assert who is not None
        if status == "unsubscribed":
            subscribers.unsubscribe(conn, who.id)
        else:
            subscribers.mark_bounced(conn, who.id)


def _subscribe_from(c: httpx.Client, address: str, *, client_ip: str | None = None) -> httpx.Response:
    _, csrf = form_of(c.get("/subscribe").text)
    headers = {"X-Forwarded-For": client_ip} if client_ip else {}
    return c.post("/subscribe", data={"csrf": csrf, "email": address}, headers=headers)


# --- 1. an old link re-subscribes without double opt-in ---------------------------------------------

def test_1_an_old_unsubscribe_link_only_offers_a_confirmation_email(site: Settings, server: str) -> None:
    address = "li.wei@example.org"
    unsubscribe = token_for(site, address)
    _set_status(site, address, "unsubscribed")
    with httpx.Client(verify=TLS, base_url=server, timeout=10) as someone:  # whoever holds an old email
        page = someone.get(f"/unsubscribe/{unsubscribe}")
        action, csrf = form_of(page.text)
        assert action.startswith("/resubscribe/")
        r = someone.post(action, data={"csrf": csrf})
        assert r.status_code == 200 and "Check your inbox" in r.text and "l•••@example.org" in r.text
    assert statuses(site)[address] == "unsubscribed"
    assert _confirmations_to(site, address) == 1  # the mailbox's owner decides
    with httpx.Client(verify=TLS, base_url=server, timeout=10) as owner:
        link = confirm_link(site, address)
        _, csrf = form_of(owner.get(link).text)
        assert owner.post(link, data={"csrf": csrf}).status_code == 200
    assert statuses(site)[address] == "subscribed"


def test_1_a_bounced_address_is_never_reactivated_from_a_link(site: Settings, server: str) -> None:
    address = "priya.nair@example.org"
    resubscribe = token_for(site, address, "resubscribe")
    _set_status(site, address, "bounced")
    with httpx.Client(verify=TLS, base_url=server, timeout=10) as c:
        r = c.get(f"/resubscribe/{resubscribe}")
        assert r.status_code == 409 and "could not be delivered" in r.text
        # Even a confirmation link (from the subscribe form) does not bring it back.
        assert _subscribe_from(c, address).status_code == 200
        link = confirm_link(site, address)
        _, csrf = form_of(c.get(link).text)
        assert c.post(link, data={"csrf": csrf}).status_code == 409
    assert statuses(site)[address] == "bounced"


# --- 2. mail bombing through the subscribe form ---------------------------------------------------------

def test_2_confirmations_to_one_address_are_limited_across_clients_and_restarts(site: Settings) -> None:
    victim = "victim@example.net"
    app = create_app(site)
    with running(app, proxy_headers=True, forwarded_allow_ips="*") as url, \
            httpx.Client(verify=TLS, base_url=url, timeout=10) as c:
        codes = [_subscribe_from(c, victim, client_ip=f"198.51.100.{n}").status_code for n in range(1, 31)]
    assert codes[:3] == [200] * 3 and set(codes[3:]) == {429}
    assert _confirmations_to(site, victim) == 3
    # A restart (or a second process) reads the same counter from the database.
    with running(create_app(site), proxy_headers=True, forwarded_allow_ips="*") as url, \
            httpx.Client(verify=TLS, base_url=url, timeout=10) as c:
        r = _subscribe_from(c, victim, client_ip="203.0.113.7")
        assert r.status_code == 429 and "already sent several emails" in r.text
        assert _subscribe_from(c, "someone.else@example.net", client_ip="203.0.113.7").status_code == 200
    assert _confirmations_to(site, victim) == 3
    with contextlib.closing(db.connect(site.path(site.database))) as conn:
        stored = " ".join(str(v) for row in conn.execute("SELECT * FROM confirmation_mail") for v in row)
    assert victim not in stored  # the limit keys on a keyed digest, not the address


def test_2_ipv6_clients_are_grouped_by_64(site: Settings) -> None:
    with running(create_app(site), proxy_headers=True, forwarded_allow_ips="*") as url, \
            httpx.Client(verify=TLS, base_url=url, timeout=10) as c:
        codes = [_subscribe_from(c, f"reader{n}@example.net", client_ip=f"2001:db8:1:2::{n:x}").status_code
                 for n in range(1, 7)]
        assert codes == [200] * 5 + [429]
        assert _subscribe_from(c, "reader9@example.net", client_ip="2001:db8:1:3::1").status_code == 200
    from newsletter.web.security import client_key

    assert client_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("::ffff:198.51.100.4") == "198.51.100.4"


def test_2_the_limiter_is_a_sliding_window_and_prunes_only_old_hits(tmp_path: Path) -> None:
    from newsletter.store import web_state

    now = [0.0]
    limiter = RateLimiter(2, 600.0, clock=lambda: now[0], prune_every=0.0)
    conn = db.connect(tmp_path / "limits.db")
    web_state.ensure_schema(conn)
    for n in range(9):  # older visitors
        limiter.hit(conn, f"old-{n}")
    now[0] = 100.0
    assert limiter.hit(conn, "attacker") == 0.0 and limiter.hit(conn, "attacker") == 0.0
    now[0] = 150.0
    assert limiter.hit(conn, "attacker") == 550.0  # until the oldest of its 2 hits is 600 s old
    now[0] = 601.0
    for n in range(50):  # a flood of fresh addresses, each pruning old hits
        limiter.hit(conn, f"flood-{n}")
        now[0] += 0.01
        assert limiter.hit(conn, "attacker") > 0, n  # still limited: recent hits are never pruned
    clients = {row[0] for row in conn.execute("SELECT client FROM web_rate_hits")}
    assert not any(c.startswith("old-") for c in clients) and "attacker" in clients
    # Sliding: a place frees up when the oldest hit is a window old, not all places at once.
    now[0] = 1000.0
    assert limiter.hit(conn, "slider") == 0.0
    now[0] = 1300.0
    assert limiter.hit(conn, "slider") == 0.0
    now[0] = 1601.0
    assert limiter.hit(conn, "slider") == 0.0  # the hit at 1000 s has left the window
    assert limiter.hit(conn, "slider") == 299.0  # the one at 1300 s has not
    conn.close()


# --- 3. unapproved edits of a sent issue are published ----------------------------------------------------

def test_3_an_edit_after_sending_is_never_published(site: Settings, client: httpx.Client,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    folder = site.root / "issues" / SENT
    sent_subject = client.get("/feed.xml").text
    # `build` refuses a sent issue now (issue 13); an edit by hand, or by an older copy of the tool,
    # still changes the files on disk, and the web app must not publish it.
    html = folder / "build" / "email.html"
    html.write_text(html.read_text("utf-8").replace("<body", "<body data-x", 1).replace(
        "</body>", "<p>EDITED AFTER SENDING</p></body>", 1), encoding="utf-8")
    meta = folder / "build" / "build.json"
    meta.write_text(re.sub(r'"subject": ".*?"', '"subject": "EDITED AFTER SENDING"', meta.read_text("utf-8"), count=1),
                    encoding="utf-8")
    assert "EDITED AFTER SENDING" in (folder / "build" / "email.html").read_text("utf-8")
    caplog.set_level(logging.WARNING, logger="newsletter.serve")
    for path in ("/", "/feed.xml", f"/issues/{SENT}"):
        r = client.get(path)
        assert "EDITED AFTER SENDING" not in r.text, path
    assert client.get(f"/issues/{SENT}").status_code == 404
    assert "EDITED" not in sent_subject
    assert any("differs from the build approved" in r.getMessage() for r in caplog.records)


# --- 4. a one-character or whitespace secret is accepted ----------------------------------------------

@pytest.mark.parametrize("weak", [" ", "x", "  \t  ", "a" * 40, "0123456789" * 3, "abababababababababababababababab"])
def test_4_a_weak_secret_is_refused_with_how_to_make_one(site: Settings, weak: str) -> None:
    from newsletter.errors import ConfigError
    from newsletter.settings import load_settings

    weak_site = load_settings(site.root / "newsletter.toml", env={"NEWSLETTER_SECRET": weak})
    with pytest.raises(ConfigError) as info:
        create_app(weak_site)
    assert info.value.key == "NEWSLETTER_SECRET" and "secrets.token_urlsafe(32)" in str(info.value)
    assert repr(weak) not in str(info.value) or weak.strip() == ""  # the secret itself is never shown


def test_4_a_generated_secret_is_accepted(site: Settings) -> None:
    import secrets as secrets_module

    from newsletter.settings import load_settings

    for secret in (secrets_module.token_urlsafe(32), secrets_module.token_hex(32)):
        create_app(load_settings(site.root / "newsletter.toml", env={"NEWSLETTER_SECRET": secret}))


def test_4_the_docs_make_secrets_of_32_bytes() -> None:
    repo = Path(__file__).resolve().parent.parent
    for doc in ("README.md", "docs/serving.md", "docs/security.md"):
        text = (repo / doc).read_text(encoding="utf-8")
        assert "token_urlsafe(32)" in text and "32" in text, doc


# --- 5. an empty var/secret gives an empty key ---------------------------------------------------------

def _demo(site: Settings) -> Settings:
    import dataclasses

    return dataclasses.replace(site, secret="")  # the Maildir demo: var/secret is used


@pytest.mark.parametrize("content", ["", "\n", "short\n"])
def test_5_an_empty_or_short_secret_file_is_refused(site: Settings, content: str) -> None:
    from newsletter.errors import ConfigError

    secret_file = site.path(site.database).parent / "secret"
    secret_file.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        create_app(_demo(site))
    assert str(secret_file) in str(info.value) and "delete it" in str(info.value)


def test_5_the_secret_file_is_written_atomically_0600_and_shared(site: Settings) -> None:
    import os
    import stat
    import threading

    from newsletter.settings import signing_secret

    demo = _demo(site)
    secret_file = demo.path(demo.database).parent / "secret"
    secret_file.unlink(missing_ok=True)
    old_umask = os.umask(0o022)
    try:
        results: list[str] = []
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def one() -> None:
            start.wait()
            try:
                results.append(signing_secret(demo))
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.umask(old_umask)
    assert errors == [] and len(set(results)) == 1 and len(results[0]) >= 32
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert [p.name for p in secret_file.parent.iterdir() if p.name.startswith(".secret")] == []


# --- 6. slowloris ---------------------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_6_a_slow_request_head_is_cut_off_and_others_are_served(site: Settings) -> None:
    import os
    import select
    import socket
    import subprocess
    import sys
    import time

    port = _free_port()
    import newsletter

    package_root = str(Path(newsletter.__file__).resolve().parent.parent)  # the code under test, not an install
    env = {**os.environ, "NEWSLETTER_SECRET": SECRET, "PYTHONPATH": package_root}
    process = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(site.root / "newsletter.toml"),
                                "serve", "--port", str(port), "--header-timeout", "1"],
                               cwd=site.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    slow: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", verify=TLS, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        for _ in range(20):  # half-open requests that drip one header line at a time
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        def cut_off(s: socket.socket) -> bool:
            """The server closed it (and sent nothing)."""
            try:
                return s.recv(1024) == b""
            except (ConnectionResetError, BrokenPipeError):
                return True

        started = time.monotonic()
        closed = 0
        dripping = list(slow)
        # Drip for up to 3.5 s (3.5 header timeouts), stopping as soon as the server has cut every one off.
        while dripping and time.monotonic() - started <= 3.5:
            time.sleep(0.5)
            for s in dripping:
                with contextlib.suppress(OSError):
                    s.sendall(b"X-Slow: 1\r\n")  # each byte used to reset Uvicorn's keep-alive timer
            readable, _, _ = select.select(dripping, [], [], 0)
            for s in readable:
                closed += cut_off(s)
                dripping.remove(s)
        for s in dripping:
            s.settimeout(2)
            with contextlib.suppress(TimeoutError):
                closed += cut_off(s)
        assert closed == len(slow)
        assert httpx.get(f"http://127.0.0.1:{port}/", verify=TLS, timeout=5).status_code == 200
    finally:
        for s in slow:
            s.close()
        process.terminate()
        out, err = process.communicate(timeout=15)
    assert "signing links with the secret from the environment" in err  # finding 15: the source is said


def test_6_limits_are_set_and_documented() -> None:
    from newsletter.web.server import uvicorn_config

    config = uvicorn_config(create_app, host="127.0.0.1", port=0)
    assert config.timeout_keep_alive <= 5 and config.limit_concurrency and config.h11_max_incomplete_event_size
    text = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text(encoding="utf-8")
    assert "reverse proxy" in text and "--header-timeout" in text


# --- 7. log forging -------------------------------------------------------------------------------------

def test_7_control_characters_are_escaped_in_the_log(site: Settings, server: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    import http.client

    caplog.set_level(logging.INFO, logger="newsletter.serve.access")
    conn = http.client.HTTPConnection(server.removeprefix("http://"), timeout=10)
    try:
        conn.request("GET", "/nothing%0d%0a127.0.0.1%20%22GET%20/admin%22%20200%00%1b[2J")
        conn.getresponse().read()
    finally:
        conn.close()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "newsletter.serve.access"]
    assert "\r" not in line and "\n" not in line and "\x00" not in line and "\x1b" not in line
    assert "\\x0d\\x0a" in line and "\\x1b" in line
    # And the formatter of `newsletter serve` escapes whatever any message holds.
    from newsletter.web.security import EscapingFormatter

    record = logging.LogRecord("newsletter.serve", logging.WARNING, __file__, 1, "a %s b", ("x\ny\x1b",), None)
    assert EscapingFormatter("%(message)s").format(record) == "a x\\x0ay\\x1b b"


# --- 8. a password in the query leaks its tail ------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "smtp://user@host:P?password=S3cr3t-P@ss!word",
    "smtp://user@mail.example.org:587?starttls=required&password=S3cr3t-P@ss!word",
    "smtp://user@mail.example.org:587?token=S3cr3t-P@ss!word&timeout=5",
    "smtps://user:S3cr3t-P@ss!word@mail.example.org:465",
])
def test_8_no_part_of_a_password_is_shown(url: str) -> None:
    from newsletter.errors import ConfigError
    from newsletter.transports import mask_url, open_transport

    shown = mask_url(url)
    for piece in ("S3cr3t", "ss!word", "P@ss"):
        assert piece not in shown, shown
    with pytest.raises(ConfigError) as info:
        open_transport(url, password="from-the-environment")
    assert "NEWSLETTER_SMTP_PASSWORD" in str(info.value)
    for piece in ("S3cr3t", "ss!word", "P@ss"):
        assert piece not in str(info.value)


# --- 9. a non-ASCII SMTP password ------------------------------------------------------------------------

def test_9_a_non_ascii_password_logs_in_as_utf8_and_never_echoes(tmp_path: Path) -> None:
    from smtp_servers import simple_message, starttls_server

    from newsletter.errors import ConnectionRefusedForAll
    from newsletter.models import Subscriber
    from newsletter.transports import open_transport

    def person(i: int) -> Subscriber:
        return Subscriber(id=i, email=f"reader{i}@example.org", name="")

    password = "Pässwörd-für-SMTP-ünïcode"
    with starttls_server(tmp_path, users={"editor": password}) as server:
        url = server.url(query=f"cafile={server.ca_path}", user="editor")
        good = open_transport(url, password=password)
        good.send(simple_message("2026-11-25", person(1)))
        good.close()
        assert len(server.handler.messages) == 1
        bad = open_transport(url, password=password.replace("ä", "a", 1).replace("P", "Ö"))
        with pytest.raises(ConnectionRefusedForAll) as info:
            bad.send(simple_message("2026-11-25", person(2)))
        shown = str(info.value) + repr(info.value)
        assert "authentication failed" in shown
        assert not any(c in shown for c in "äöüÖï") and "position" not in shown


# --- 10. one damaged build.json takes the archive down ------------------------------------------------------

@pytest.mark.parametrize("damage", ["[]", '"a string"', "42", "null"])
def test_10_one_damaged_issue_is_skipped_the_rest_are_served(site: Settings, client: httpx.Client, damage: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    other = "2026-11-26"
    shutil.copytree(site.root / "issues" / SENT, site.root / "issues" / other)
    with contextlib.closing(db.connect(site.path(site.database))) as conn:
        conn.execute("INSERT INTO ledger (issue_id, subscriber_id, status, sent_at)"
                     " SELECT ?, id, 'sent', '2026-11-26T08:00:00+00:00' FROM subscribers", (other,))
        conn.commit()
    assert f'href="/issues/{other}"' in client.get("/").text  # both listed while both are whole
    (site.root / "issues" / other / "build" / "build.json").write_text(damage, encoding="utf-8")
    caplog.set_level(logging.WARNING, logger="newsletter.serve")
    home, feed, page = client.get("/"), client.get("/feed.xml"), client.get(f"/issues/{other}")
    assert home.status_code == 200 and f'href="/issues/{SENT}"' in home.text and other not in home.text
    assert feed.status_code == 200 and f"/issues/{SENT}" in feed.text and other not in feed.text
    assert page.status_code == 404 and "Traceback" not in page.text
    assert client.get(f"/issues/{SENT}").status_code == 200
    assert any(other in r.getMessage() for r in caplog.records)


# --- 11. the database is created world-readable ------------------------------------------------------------

def test_11_the_database_is_created_0600_and_a_readable_one_is_reported(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    import os
    import stat

    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "var" / "newsletter.sqlite3"
        conn = db.connect(path)
        subscribers.add(conn, "reader@example.org", "Reader")
        conn.close()
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
        assert modes[path.name] == 0o600 and all(m & 0o077 == 0 for m in modes.values()), modes
        old = tmp_path / "old.sqlite3"
        old.touch(mode=0o644)
        os.chmod(old, 0o644)
        caplog.set_level(logging.WARNING, logger="newsletter.db")
        db.connect(old).close()
    finally:
        os.umask(old_umask)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "newsletter.db"]
    assert str(old) in warning and "chmod 600" in warning


# --- 12. nested parentheses in a multipart header ----------------------------------------------------------

def test_12_a_hostile_multipart_body_is_400_never_500(site: Settings, client: httpx.Client) -> None:
    nested = "(" * 5000 + ")" * 5000
    body = (f'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"; x={nested}\r\n\r\n'
            "One-Click\r\n--b--\r\n").encode()
    r = client.post(f"/unsubscribe/{token_for(site, 'amara.okafor@example.org')}", content=body,
                    headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 400 and "Traceback" not in r.text
    assert statuses(site)["amara.okafor@example.org"] == "subscribed"


# --- 13. trailing-slash redirects reflect the Host header --------------------------------------------------

def test_13_slash_redirects_are_relative_and_ignore_the_host_header(site: Settings, server: str) -> None:
    import http.client

    def get(path: str, host: str, root: str = server) -> tuple[int, str | None]:
        conn = http.client.HTTPConnection(root.removeprefix("http://"), timeout=10)
        try:
            conn.putrequest("GET", path, skip_host=True)
            conn.putheader("Host", host)
            conn.endheaders()
            response = conn.getresponse()
            response.read()
            return response.status, response.getheader("Location")
        finally:
            conn.close()

    for path, target in ((f"/issues/{SENT}/", f"/issues/{SENT}"), ("/subscribe/?a=1", "/subscribe?a=1"),
                         ("/feed.xml/", "/feed.xml")):
        status, location = get(path, "evil.example")
        assert status == 307 and location == target, (path, location)
    assert get("//evil.example/", "evil.example")[0] == 404
    assert get("/nothing-here/", "evil.example") == (404, None)
    with running(create_app(site), root_path="/newsletter") as url:
        assert get(f"/issues/{SENT}/", "evil.example", url) == (307, f"/newsletter/issues/{SENT}")


# --- 14. confirm links are reusable and undo a later unsubscribe -----------------------------------------

def test_14_a_confirm_link_works_once(site: Settings, server: str) -> None:
    address = "new.reader@example.org"
    with httpx.Client(verify=TLS, base_url=server, timeout=10) as c:
        assert _subscribe_from(c, address).status_code == 200
        link = confirm_link(site, address)
        _, csrf = form_of(c.get(link).text)
        assert c.post(link, data={"csrf": csrf}).status_code == 200
        assert statuses(site)[address] == "subscribed"
        token = token_for(site, address)
        assert c.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 200
        _, csrf = form_of(c.get(link).text)
        r = c.post(link, data={"csrf": csrf})  # the same link, two days' worth of reuse
        assert r.status_code == 400 and "already been used" in r.text
    assert statuses(site)[address] == "unsubscribed"


def test_14_an_unused_confirm_link_honours_a_later_unsubscribe(site: Settings, server: str) -> None:
    from itsdangerous import URLSafeTimedSerializer
    from test_serve import old_signer

    address = "amara.okafor@example.org"  # subscribed; an old confirm link of hers was never used
    old_link = URLSafeTimedSerializer(SECRET, salt="newsletter.confirm-email", signer=old_signer(3600)).dumps(
        {"email": address, "name": ""})
    with httpx.Client(verify=TLS, base_url=server, timeout=10) as c:
        assert c.post(f"/unsubscribe/{token_for(site, address)}", data=ONE_CLICK).status_code == 200
        _, csrf = form_of(c.get(f"/confirm/{old_link}").text)
        r = c.post(f"/confirm/{old_link}", data={"csrf": csrf})
        assert r.status_code == 400 and "older than your unsubscribe" in r.text
    assert statuses(site)[address] == "unsubscribed"


# --- 15. serve quietly uses var/secret -----------------------------------------------------------------

def test_15_serve_says_which_secret_and_refuses_a_demo_key_that_did_not_sign_the_sends(
        site: Settings, caplog: pytest.LogCaptureFixture) -> None:
    import dataclasses

    from newsletter.errors import ConfigError
    from newsletter.tokens import key_id

    with contextlib.closing(db.connect(site.path(site.database))) as conn:
        recorded = conn.execute("SELECT issue_id, key_id FROM send_keys").fetchall()
    assert [tuple(r) for r in recorded] == [(SENT, key_id(SECRET))]
    caplog.set_level(logging.INFO, logger="newsletter.serve")
    create_app(site)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "the environment (NEWSLETTER_SECRET)" in said and key_id(SECRET) in said and SECRET not in said
    demo = dataclasses.replace(site, secret="")  # NEWSLETTER_SECRET forgotten in the service's environment
    with pytest.raises(ConfigError) as info:
        create_app(demo)
    assert info.value.key.endswith("var/secret") and SENT in str(info.value)  # type: ignore[union-attr]


# --- 16. tokens carry an unkeyed digest of the address ---------------------------------------------------

def test_16_a_token_does_not_confirm_a_guessed_address_and_old_links_still_work(site: Settings,
                                                                               client: httpx.Client) -> None:
    import hashlib

    from itsdangerous import Signer

    from newsletter.tokens import make_token

    amara = subscriber(site, "amara.okafor@example.org")
    token = make_token(SECRET, "unsubscribe", amara.id, amara.email)
    digest = token.split(".")[1]
    for guess in (amara.email, amara.email.upper(), f" {amara.email} "):
        unkeyed = hashlib.sha256(guess.strip().lower().encode()).hexdigest()
        assert not unkeyed.startswith(digest) and digest not in unkeyed  # offline guessing needs the secret
    # A link in an inbox from before the change (unkeyed digest) still unsubscribes.
    li = subscriber(site, "li.wei@example.org")
    legacy_digest = hashlib.sha256(li.email.lower().encode()).hexdigest()[:10]
    legacy = Signer(SECRET, salt="newsletter.unsubscribe").sign(f"{li.id}.{legacy_digest}").decode()
    assert client.post(f"/unsubscribe/{legacy}", data=ONE_CLICK).status_code == 200
    assert statuses(site)[li.email] == "unsubscribed"
    # ... and a legacy-format token for another address does not.
    wrong = Signer(SECRET, salt="newsletter.unsubscribe").sign(f"{amara.id}.{legacy_digest}").decode()
    assert client.post(f"/unsubscribe/{wrong}", data=ONE_CLICK).status_code == 400


# --- 17. the CSRF nonce is adopted from any cookie ------------------------------------------------------

def test_17_a_planted_csrf_cookie_is_not_adopted(site: Settings, server: str) -> None:
    token = token_for(site, "zoe.mueller@example.org")
    planted = "A" * 32  # the right shape; set by a sibling subdomain, or by the attacker's own visit
    with httpx.Client(verify=TLS, base_url=server, timeout=10) as attacker:
        page = attacker.get(f"/unsubscribe/{token}", headers={"Cookie": f"nl_csrf={planted}"})
        _, field = form_of(page.text)
        assert planted not in page.headers["set-cookie"]
    with httpx.Client(verify=TLS, base_url=server, timeout=10) as victim:  # carries the planted cookie only
        r = victim.post(f"/unsubscribe/{token}", data={"csrf": field}, headers={"Cookie": f"nl_csrf={planted}"})
        assert r.status_code == 403
    assert statuses(site)["zoe.mueller@example.org"] == "subscribed"


# --- Also: an unsubscribe stops messages already claimed --------------------------------------------------

def test_also_an_unsubscribe_during_a_send_stops_claimed_messages(tmp_path: Path) -> None:
    from typing import Any

    from smtp_servers import RecordingHandler, simple_message, smtp_server

    from newsletter.policies import SendPolicy
    from newsletter.send import send_issue
    from newsletter.transports import open_transport

    path = tmp_path / "newsletter.sqlite3"
    conn = db.connect(path)
    people = [subscribers.add(conn, f"reader{n}@example.org") for n in range(1, 31)]
    leaving = people[9]

    class UnsubscribesDuringTheSend(RecordingHandler):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if not self.messages:  # while the first message is being delivered, reader10 unsubscribes
                with contextlib.closing(db.connect(path)) as web:
                    subscribers.unsubscribe(web, leaving.id)
            return await super().handle_DATA(server, session, envelope)

    handler = UnsubscribesDuringTheSend()
    with smtp_server(handler) as server:
        report = send_issue(conn, "2026-11-25", make_message=lambda s: simple_message("2026-11-25", s),
                            transport_factory=lambda: open_transport(server.url(query="starttls=off"), timeout=5.0),
                            policy=SendPolicy(claim_size=50))
    recipients = handler.recipients()
    assert leaving.email not in recipients and report.sent == 29 and len(recipients) == 29
    row = conn.execute("SELECT status FROM ledger WHERE issue_id = ? AND subscriber_id = ?",
                       ("2026-11-25", leaving.id)).fetchone()
    assert row is None or row[0] != "sent"
    conn.close()


# --- the schema upgrade ----------------------------------------------------------------------------------

def test_a_version_1_database_upgrades_in_place_to_the_latest(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    for statement in db._SCHEMA_V1:
        old.execute(statement)
    old.execute("INSERT INTO subscribers (email, email_key, status) VALUES ('a@example.org', 'a@example.org', "
                "'subscribed')")
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()
    conn = db.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION == 5
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"confirmation_mail", "used_links", "send_keys"} <= tables
        assert subscribers.count(conn) == 1  # nothing lost
    finally:
        conn.close()
