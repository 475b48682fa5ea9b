"""Secrets and TLS: passwords and signing secrets never leak; TLS is verified and never silently dropped;
unsubscribe tokens cannot be forged or swapped; unsubscribed and bounced people get no later issue.

The leak test runs the CLI's entry point (compose, build, check, approve, import, send, publish, status) with
distinctive secret values, through a failing SMTP login, a refused connection, a password put in
the URL and a successful authenticated send, then searches every line printed, every file under
the project and every message the server received for the secrets (raw, base64, URL-quoted and
the AUTH PLAIN payload).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import os
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cli_inprocess import run_newsletter
from faults import FaultInjectingHandler, Rule, copy_sample_project, fault_server, prepare_issue
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st
from smtp_servers import _tls, smtp_server, smtps_server, starttls_server

from newsletter.store import sqlite as db, subscribers
from newsletter.approval import approve
from newsletter.jobs.delivery import personaliser_for, send_full
from newsletter.transports import transport_factory
from newsletter.errors import TokenError
from newsletter.jobs.issues import build, compose
from newsletter.send import RetryPolicy, send_issue
from newsletter.settings import Settings, load_settings
from newsletter.tokens import digest_matches, keyed_email_digest, make_token, read_token

SIGNING = "SIGNING-SECRET-Wn4r2Tq9LmXv-7Hc3Kp8Zs"
PASSWORD = "SMTP-PASSWORD-Zq8k3Jd#x!v:@%/"  # what real passwords look like: URL-special characters
PLAIN_PASSWORD = "SMTPpasswordPlain7731"
USER = "newsletter"
ISSUE = "2026-11-25"


def secret_forms() -> dict[str, bytes]:
    """Every shape in which a secret could leak."""
    forms = {}
    for name, value in (("signing secret", SIGNING), ("SMTP password", PASSWORD), ("plain password", PLAIN_PASSWORD)):
        raw = value.encode()
        forms[name] = raw
        forms[f"{name} (base64)"] = base64.b64encode(raw)
        forms[f"{name} (url-quoted)"] = quote(value, safe="").encode()
    forms["AUTH PLAIN payload"] = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    forms["AUTH LOGIN password"] = base64.b64encode(PASSWORD.encode())
    return forms


class RecordingAuthenticator:
    """aiosmtpd authenticator that remembers every login attempt (and whether it came over TLS)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.attempts: list[tuple[str, bool]] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.attempts.append((login, session.ssl is not None))
        return AuthResult(success=self.users.get(login) == password, handled=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cli:
    """Runs the `newsletter` CLI in the project with the given secrets; keeps every output.

    In this process (cli_inprocess: the same entry point, its stdout and stderr, a traceback or a
    WARNING log line included), with exactly the environment built here.
    """

    def __init__(self, project: Path) -> None:
        self.project = project
        self.outputs: list[tuple[str, str]] = []

    def __call__(self, *args: str, transport: str | None = None, password: str | None = PASSWORD,
                 signing: str | None = SIGNING) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        if signing is not None:
            env["NEWSLETTER_SECRET"] = signing
        if password is not None:
            env["NEWSLETTER_SMTP_PASSWORD"] = password
        if transport is not None:
            env["NEWSLETTER_TRANSPORT"] = transport
        result = run_newsletter(args, cwd=self.project, env=env)
        self.outputs.append((" ".join(args), result.stdout + result.stderr))
        assert "Traceback" not in result.stderr, result.stderr
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(copy_sample_project(tmp_path / "site"))


def test_secrets_never_appear_in_output_files_or_messages(cli: Cli, tmp_path: Path) -> None:
    assert cli("compose", "--date", ISSUE).returncode == 0
    assert cli("build", f"issues/{ISSUE}").returncode == 0
    assert cli("check", f"issues/{ISSUE}").returncode == 0
    assert cli("approve", f"issues/{ISSUE}").returncode == 0
    assert cli("subscribers", "import", "content/subscribers.csv").returncode == 0
    received: list[bytes] = []
    with starttls_server(tmp_path, authenticator=RecordingAuthenticator({USER: "the-right-one"})) as server:
        wrong = server.url(user=USER, query=f"cafile={server.ca_path}")
        failed = cli("send", ISSUE, transport=wrong)
        assert failed.returncode == 3 and f"authentication failed for user '{USER}'" in failed.stderr
        proof = cli("send", ISSUE, "--to", "editor@example.org", transport=wrong)
        assert proof.returncode == 1 and "authentication failed" in proof.stderr
        published = cli("publish", "--date", ISSUE, transport=wrong)
        assert published.returncode == 3 and "authentication failed" in published.stderr
        assert server.handler.messages == []
    refused = cli("send", ISSUE, transport=f"smtp://{USER}@127.0.0.1:{free_port()}")
    assert refused.returncode == 3 and "cannot connect" in refused.stderr
    in_url = cli("send", ISSUE, transport=f"smtp://{USER}:{PLAIN_PASSWORD}@127.0.0.1:{free_port()}")
    assert in_url.returncode == 1 and "NEWSLETTER_SMTP_PASSWORD" in in_url.stderr
    missing = cli("send", ISSUE, transport=f"smtp://{USER}@127.0.0.1:{free_port()}", signing=None)
    assert missing.returncode == 1 and "NEWSLETTER_SECRET" in missing.stderr
    auth = RecordingAuthenticator({USER: PASSWORD})
    with starttls_server(tmp_path, authenticator=auth) as server:
        good = server.url(user=USER, query=f"cafile={server.ca_path}")
        assert cli("send", ISSUE, "--dry-run", transport=good).returncode == 0
        sent = cli("send", ISSUE, transport=good)
        assert sent.returncode == 0, sent.stderr
        assert cli("send", ISSUE, "--to", "editor@example.org", transport=good).returncode == 0
        received = [m.data for m in server.handler.messages]
    assert len(received) == 9 and auth.attempts and all(over_tls for _, over_tls in auth.attempts)
    assert cli("status", ISSUE).returncode == 0
    assert cli("status", ISSUE, "--json").returncode == 0

    leaks = []
    for form, needle in secret_forms().items():
        for command, output in cli.outputs:
            if needle in output.encode():
                leaks.append(f"{form} in the output of `newsletter {command}`")
        for path in cli.project.rglob("*"):
            if path.is_file() and needle in path.read_bytes():
                leaks.append(f"{form} in {path.relative_to(cli.project)}")
        for data in received:
            if needle in data:
                leaks.append(f"{form} in a delivered message")
    assert leaks == []
    assert len(cli.outputs) >= 15


def test_a_password_pasted_into_the_url_is_never_printed(cli: Cli) -> None:
    prepare_issue(load_settings(cli.project / "newsletter.toml", env={"NEWSLETTER_SECRET": SIGNING}))
    result = cli("send", ISSUE, transport=f"smtp://{USER}:{PASSWORD}@127.0.0.1:{free_port()}")
    assert result.returncode == 1
    shown = result.stdout + result.stderr
    assert PASSWORD not in shown and PASSWORD[:16] not in shown, shown


# --- TLS ---------------------------------------------------------------------------------------------

def test_untrusted_certificate_fails_by_default_before_any_login(cli: Cli, tmp_path: Path) -> None:
    prepare_issue(load_settings(cli.project / "newsletter.toml", env={"NEWSLETTER_SECRET": SIGNING}))
    auth = RecordingAuthenticator({USER: PASSWORD})
    with starttls_server(tmp_path, authenticator=auth) as server:
        result = cli("send", ISSUE, transport=server.url(user=USER))
        assert server.handler.messages == []
    assert result.returncode == 3
    assert f"certificate verify failed for {server.host}" in result.stderr and "?cafile=" in result.stderr
    assert auth.attempts == []  # the password never went to the unverified server
    with smtps_server(tmp_path) as server:
        implicit = cli("send", ISSUE, transport=server.url("smtps", user=USER))
        assert server.handler.messages == []
    assert implicit.returncode == 3 and "certificate verify failed" in implicit.stderr
    assert cli("status", ISSUE, "--json").stdout.count('"sent": 0') == 1


def test_server_without_starttls_is_refused_when_tls_is_required(cli: Cli) -> None:
    prepare_issue(load_settings(cli.project / "newsletter.toml", env={"NEWSLETTER_SECRET": SIGNING}))
    auth = RecordingAuthenticator({USER: PASSWORD})
    # A server that offers AUTH in clear text but no STARTTLS (a downgrade, or the wrong port).
    with smtp_server(authenticator=auth, auth_require_tls=False) as server:
        result = cli("send", ISSUE, transport=server.url(user=USER))
        assert server.handler.messages == []
    assert result.returncode == 3 and "does not offer STARTTLS" in result.stderr
    assert auth.attempts == []
    assert '"sent": 0' in cli("status", ISSUE, "--json").stdout


def test_starttls_refused_by_the_server_sends_nothing_in_clear(settings: Settings, tmp_path: Path) -> None:
    issue = prepare_issue(settings).folder
    context, ca_path = _tls(tmp_path)
    handler = FaultInjectingHandler(starttls_reply="454 4.7.0 TLS not available due to temporary reason")
    with fault_server(handler, tls_context=context) as server:
        smtp = dataclasses.replace(settings, transport=server.url(query=f"cafile={ca_path}&timeout=5"))
        conn = db.connect(settings.path(settings.database))
        try:
            report = send_issue(conn, issue.name, make_message=personaliser_for(smtp, issue).message,
                                transport_factory=transport_factory(smtp), sleep=lambda _: None,
                                retry=RetryPolicy(attempts=2, base_delay=0.01))
        finally:
            conn.close()
    assert handler.transactions == 0 and handler.messages == []  # not one MAIL FROM in clear text
    # A temporary refusal: every subscriber is deferred for the next run, none is sent without TLS.
    assert (report.sent, report.deferred, report.failed) == (0, 8, 0)


# --- unsubscribe tokens --------------------------------------------------------------------------------

SECRET = "token-test-secret-for-tests-only-1"


def accepts(token: str, subscriber_id: int, address: str, *, secret: str = SECRET) -> bool:
    """What the unsubscribe page must check: a valid token that names this subscriber's current address."""
    try:
        named, digest = read_token(secret, "unsubscribe", token)
    except TokenError:
        return False
    return named == subscriber_id and digest_matches(secret, digest, address)


def test_tampered_truncated_and_foreign_tokens_are_rejected() -> None:
    alice = make_token(SECRET, "unsubscribe", 1, "alice@example.org")
    bob = make_token(SECRET, "unsubscribe", 2, "bob@example.org")
    assert accepts(alice, 1, "alice@example.org") and accepts(bob, 2, "bob@example.org")
    # <id>.<digest>[.<time>].<signature>
    ident, digest, *tail = alice.split(".")
    candidates = {
        "another subscriber's token": (bob, 1, "alice@example.org"),
        "id swapped": (".".join(["2", digest, *tail]), 2, "bob@example.org"),
        "digest swapped": (".".join([ident, bob.split(".")[1], *tail]), 1, "alice@example.org"),
        "signature swapped": (".".join([ident, digest, *tail[:-1], bob.split(".")[-1]]), 1, "alice@example.org"),
        "truncated": (alice[:-5], 1, "alice@example.org"),
        "truncated to the payload": (f"{ident}.{digest}", 1, "alice@example.org"),
        "signature flipped": (alice[:-2] + ("A" if alice[-2] != "A" else "B") + alice[-1], 1, "alice@example.org"),
        "other secret": (make_token("another-secret", "unsubscribe", 1, "alice@example.org"), 1,
                         "alice@example.org"),
        "other purpose": (make_token(SECRET, "resubscribe", 1, "alice@example.org"), 1, "alice@example.org"),
        "address changed since": (alice, 1, "mallory@example.org"),
        "empty": ("", 1, "alice@example.org"),
        "huge": (alice * 40, 1, "alice@example.org"),
        "non-ASCII": (alice.replace("1", "١", 1), 1, "alice@example.org"),
    }
    accepted = [name for name, (token, sid, address) in candidates.items() if accepts(token, sid, address)]
    assert accepted == []


@hsettings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_mutation_of_a_token_is_rejected_or_names_the_same_subscriber(data: st.DataObject) -> None:
    token = make_token(SECRET, "unsubscribe", 42, "reader@example.org")
    position = data.draw(st.integers(0, len(token) - 1))
    action = data.draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
    char = data.draw(st.sampled_from("abcxyzABCXYZ0189-_.=/+~ "))
    mutated = {
        "replace": token[:position] + char + token[position + 1:],
        "delete": token[:position] + token[position + 1:],
        "insert": token[:position] + char + token[position:],
        "truncate": token[:position],
    }[action]
    if mutated.strip() == token:
        return
    try:
        result = read_token(SECRET, "unsubscribe", mutated)
    except TokenError:
        return
    # base64 may ignore the unused low bits of the signature's last character: the same signature,
    # so the same subscriber — never a different one.
    assert result == (42, keyed_email_digest(SECRET, "reader@example.org"))


# --- unsubscribed and bounced people across issues ---------------------------------------------------------

def test_unsubscribed_and_bounced_get_no_later_issue(settings: Settings) -> None:
    first = compose(settings, date=dt.date(2026, 10, 1), limit=3)
    second = compose(settings, date=dt.date(2026, 11, 25))
    for issue in (first, second):
        build(settings, issue.folder)
        approve(issue.folder)
    conn = db.connect(settings.path(settings.database))
    try:
        subscribers.import_csv(conn, settings.root / "content" / "subscribers.csv")
    finally:
        conn.close()
    leaving, bouncing = "li.wei@example.org", "rafael.gomez@example.org"
    handler = FaultInjectingHandler([Rule("550", recipient=f"^{bouncing}$")], delay=0.05)
    unsubscribed = threading.Event()

    def unsubscribe_during_the_send() -> None:
        while len(handler.messages) < 2:
            time.sleep(0.005)
        other = db.connect(settings.path(settings.database))  # the web app's own connection
        try:
            found = subscribers.find(other, leaving)
            assert found is not None
            subscribers.unsubscribe(other, found.id)
            unsubscribed.set()
        finally:
            other.close()

    with fault_server(handler) as server:
        smtp = dataclasses.replace(settings, transport=server.url(query="starttls=off"))
        worker = threading.Thread(target=unsubscribe_during_the_send)
        worker.start()
        report = send_full(smtp, first.folder)
        worker.join(timeout=30)
        assert unsubscribed.is_set()
        assert report.failed == 1 and report.bounced == 1
        first_round = server.handler.recipients()
        handler.rules, handler.delay = [], 0.0
        second_report = send_full(smtp, second.folder)
        second_round = server.handler.recipients() - first_round
    assert first_round[bouncing] == 0
    assert second_round[leaving] == 0 and second_round[bouncing] == 0
    assert second_round == Counter({address: 1 for address in second_round}) and len(second_round) == 6
    assert second_report.sent == 6 and second_report.failed == 0
    conn = db.connect(settings.path(settings.database))
    try:
        statuses = {s.email: s.status for s in subscribers.list_subscribers(conn)}
        later = {r[0] for r in conn.execute("SELECT s.email FROM ledger l JOIN subscribers s ON s.id = l.subscriber_id"
                                            " WHERE l.issue_id = ?", (second.folder.name,))}
    finally:
        conn.close()
    assert statuses[leaving] == "unsubscribed" and statuses[bouncing] == "bounced"
    assert leaving not in later and bouncing not in later
