"""A proof copy says plainly that it is a proof, and its unsubscribe link leads to a page that says so too."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import mailbox
from urllib.parse import urlsplit

import httpx
from http_client import TLS

from newsletter.jobs.delivery import send_proof
from newsletter.jobs.issues import build, compose
from newsletter.serve import create_app
from newsletter.settings import Settings

from web_server import running


def test_proof_says_it_is_a_proof_and_its_link_says_so_too(settings: Settings) -> None:
    issue = compose(settings, date=dt.date(2026, 11, 25))
    build(settings, issue.folder)
    send_proof(settings, issue.folder, ["editor@example.org"])
    (raw,) = [bytes(m) for m in mailbox.Maildir(settings.root / "outbox", create=False)]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "PROOF COPY" in text and "PROOF COPY" in html and "unsubscribe link is inactive" in text
    base = settings.public_base_url.rstrip("/")
    link = next(line for line in text.splitlines() if line.startswith(f"{base}/unsubscribe"))
    assert str(msg["List-Unsubscribe"]).strip() == f"<{link}>"
    with running(create_app(settings)) as url, httpx.Client(verify=TLS, base_url=url, timeout=10) as client:
        parts = urlsplit(link)
        page = client.get(parts.path.removeprefix(urlsplit(base).path) + "?" + parts.query)
    assert page.status_code == 200
    assert "This link came from a proof copy" in page.text and "nothing was changed" in page.text
    assert "cut short" not in page.text
