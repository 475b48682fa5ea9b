"""Provider webhooks on a real Uvicorn server: SES via SNS, Postmark, Mailgun, SendGrid (issue #16 item 3).

Payloads follow each provider's documented examples; they are signed with keys this test makes, and
checked by the real verification code. The SNS signing certificate comes from the test's own source:
no test fetches anything from the network.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import sample_project
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from http_client import TLS

from newsletter.store import sqlite as db
from newsletter.bounces.service import history
from newsletter.bounces.sns import HttpsCertificates, SnsError
from newsletter.serve import create_app
from newsletter.settings import Settings, load_settings
from newsletter.web.hooks import WebhookConfig

from bounce_helpers import recipient, sent_issue
from web_server import running

SECRET = "test-secret-not-for-production-use"
VERP = "bounces@bounces.ms-research.example.org"  # sent_issue's default
TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-ses-events"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"
POSTMARK_KEY = "hook-user:hook-password-made-by-the-test"
MAILGUN_KEY = "key-made-by-the-test-0123456789abcdef"


@dataclasses.dataclass
class Keys:
    rsa_key: rsa.RSAPrivateKey
    cert_pem: bytes
    ec_key: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def keys() -> Keys:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    return Keys(key, cert.public_bytes(serialization.Encoding.PEM), ec.generate_private_key(ec.SECP256R1()))


@dataclasses.dataclass
class Hooks:
    url: str
    settings: Settings
    confirmed: list[str]

    def post(self, provider: str, body: bytes, **headers: str) -> httpx.Response:
        with httpx.Client(verify=TLS, base_url=self.url, timeout=10) as client:
            return client.post(f"/hooks/{provider}", content=body, headers={"content-type": "application/json",
                                                                               **headers})

    def events(self) -> int:
        conn = db.connect(self.settings.path(self.settings.database))
        try:
            return int(conn.execute("SELECT COUNT(*) FROM delivery_events").fetchone()[0])
        finally:
            conn.close()

    def person(self, n: int) -> tuple[int, str, str]:
        conn = db.connect(self.settings.path(self.settings.database))
        try:
            return recipient(conn, n)
        finally:
            conn.close()


@pytest.fixture(scope="module")
def sent_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample project with issue 2026-11-25 sent to the 8 sample subscribers (Maildir), made once per module."""
    root = tmp_path_factory.mktemp("hooks") / "site"
    sample_project(root)
    sent_issue(load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": SECRET}))
    return root


@pytest.fixture
def hooks(project: Path, sent_site: Path, keys: Keys) -> Iterator[Hooks]:
    """The webhooks served for a private copy of the sent site (so no test sees another's events)."""
    root = shutil.copytree(sent_site, project.parent / "sent-site")
    settings = dataclasses.replace(load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": SECRET}),
                                   verp_address=VERP)  # as sent_issue sent it
    sendgrid_public = base64.b64encode(keys.ec_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    sent = dataclasses.replace(settings, ses_topic_arn=TOPIC, webhook_keys=(
        ("postmark", POSTMARK_KEY), ("mailgun", MAILGUN_KEY), ("sendgrid", sendgrid_public)))
    confirmed: list[str] = []
    certificates = {CERT_URL: keys.cert_pem}
    config = WebhookConfig(certificates=lambda url: certificates[url], confirm=confirmed.append)
    with running(create_app(sent, webhooks=config)) as url:
        yield Hooks(url, sent, confirmed)


# --- SNS / SES ----------------------------------------------------------------------------------------

def sns(keys: Keys, kind: str, *, message: str, version: str = "2", timestamp: dt.datetime | None = None,
        topic: str = TOPIC, cert_url: str = CERT_URL, message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        tamper: dict[str, str] | None = None) -> bytes:
    """An SNS HTTP(S) delivery as AWS documents it, signed with the test's key."""
    stamp = (timestamp or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    body: dict[str, Any] = {"Type": kind, "MessageId": message_id, "TopicArn": topic, "Message": message,
                            "Timestamp": stamp, "SignatureVersion": version, "SigningCertURL": cert_url}
    if kind == "Notification":
        body["Subject"] = "Amazon SES Email Event Notification"
        body["UnsubscribeURL"] = "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x"
        order = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
    else:
        body["Token"] = "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736"
        body["SubscribeURL"] = ("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn="
                                f"{topic}&Token=2336412f37fb")
        order = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    signed = "".join(f"{k}\n{body[k]}\n" for k in order).encode()
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    body["Signature"] = base64.b64encode(keys.rsa_key.sign(signed, padding.PKCS1v15(), algorithm)).decode()
    body.update(tamper or {})
    return json.dumps(body).encode()


def ses_bounce(address: str, message_id: str, *, feedback_id: str = "01000181f1c1-bounce-1") -> str:
    return json.dumps({
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "feedbackId": feedback_id,
                   "timestamp": "2026-11-25T08:00:09.000Z", "reportingMTA": "dsn; a1-2.smtp-out.eu-west-1.amazonses.com",
                   "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": "5.1.1",
                                          "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
        "mail": {"timestamp": "2026-11-25T08:00:05.000Z", "source": "newsletter@ms-research.example.org",
                 "messageId": "01000181f1c1-ses-id", "destination": [address],
                 "commonHeaders": {"from": ["newsletter@ms-research.example.org"], "to": [address],
                                   "messageId": f"<{message_id}>", "subject": "New research in plain words"}},
    })


def test_sns_subscription_handshake(hooks: Hooks, keys: Keys) -> None:
    body = sns(keys, "SubscriptionConfirmation", message="You have chosen to subscribe to the topic ...")
    reply = hooks.post("ses", body)
    assert reply.status_code == 200 and reply.json() == {"subscribed": True}
    assert len(hooks.confirmed) == 1 and hooks.confirmed[0].startswith("https://sns.eu-west-1.amazonaws.com/")
    forged = sns(keys, "SubscriptionConfirmation", message="x", tamper={"SubscribeURL":
                 "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=other"})
    assert hooks.post("ses", forged).status_code == 401
    assert len(hooks.confirmed) == 1


def test_ses_bounce_and_complaint_are_recorded_once(hooks: Hooks, keys: Keys) -> None:
    sid, address, message_id = hooks.person(0)
    body = sns(keys, "Notification", message=ses_bounce(address, message_id))
    reply = hooks.post("ses", body)
    assert reply.status_code == 200 and reply.json() == {"recorded": 1, "duplicates": 0, "skipped": 0}
    again = hooks.post("ses", body)  # SNS retries a delivery it thinks failed: recognised, not counted
    assert again.json() == {"recorded": 0, "duplicates": 1, "skipped": 0}
    found = history(hooks.settings, address)
    assert found.subscriber.status == "bounced"
    assert [(e.kind, e.source, e.code, e.issue_id) for e in found.events] == [("hard", "ses", "5.1.1", "2026-11-25")]
    sid1, address1, message_id1 = hooks.person(1)
    complaint = json.dumps({"notificationType": "Complaint", "complaint": {
        "complainedRecipients": [{"emailAddress": address1}], "complaintFeedbackType": "abuse",
        "feedbackId": "01000181f1c1-complaint-1", "userAgent": "ExampleMail/1.0"},
        "mail": {"commonHeaders": {"messageId": f"<{message_id1}>"}, "destination": [address1]}})
    reply = hooks.post("ses", sns(keys, "Notification", message=complaint, version="1", message_id="m2"))
    assert reply.status_code == 200 and reply.json()["recorded"] == 1
    assert history(hooks.settings, address1).subscriber.status == "unsubscribed"
    assert history(hooks.settings, address1).complained


@pytest.mark.parametrize(("change", "status"), [
    ({"topic": "arn:aws:sns:eu-west-1:999999999999:someone-elses-topic"}, 403),
    ({"cert_url": "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem"}, 401),
    ({"cert_url": "http://sns.eu-west-1.amazonaws.com/cert.pem"}, 401),
    ({"timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)}, 401),  # a replay of an old message
    ({"tamper": {"Message": "{}"}}, 401),
    ({"tamper": {"Signature": "not base64!"}}, 401),
    ({"version": "3"}, 401),
])
def test_ses_refusals_change_nothing(hooks: Hooks, keys: Keys, change: dict[str, Any], status: int) -> None:
    _, address, message_id = hooks.person(2)
    before = hooks.events()
    reply = hooks.post("ses", sns(keys, "Notification", message=ses_bounce(address, message_id), **change))
    assert reply.status_code == status, reply.text
    assert reply.text.startswith("refused: ") and reply.text.count("\n") == 1
    assert hooks.events() == before and history(hooks.settings, address).subscriber.status == "subscribed"


def test_production_certificates_only_come_from_sns_over_https() -> None:
    fetch = HttpsCertificates()
    for url in ("http://sns.us-east-1.amazonaws.com/x.pem", "https://sns.us-east-1.amazonaws.com:8443/x.pem",
                "https://evil.example/sns.us-east-1.amazonaws.com/x.pem", "file:///etc/passwd"):
        with pytest.raises(SnsError, match="not an https:// Amazon SNS address"):
            fetch(url)


# --- Postmark -----------------------------------------------------------------------------------------

def postmark_bounce(address: str, *, record: str = "Bounce", kind: str = "HardBounce", ident: int = 4323372036854775807) -> bytes:
    return json.dumps({"RecordType": record, "ID": ident, "Type": kind, "TypeCode": 1, "Name": "Hard bounce",
                       "Tag": "newsletter", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
                       "ServerID": 23, "MessageStream": "broadcast",
                       "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
                       "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
                       "Email": address, "From": "newsletter@ms-research.example.org",
                       "BouncedAt": "2026-11-25T08:00:09Z", "Inactive": True, "CanActivate": True,
                       "Subject": "New research in plain words"}).encode()


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def test_postmark_basic_auth(hooks: Hooks) -> None:
    _, address, _ = hooks.person(3)
    before = hooks.events()
    for auth in (None, basic("hook-user:wrong"), "Bearer " + POSTMARK_KEY, "Basic %%%"):
        headers = {"authorization": auth} if auth else {}
        assert hooks.post("postmark", postmark_bounce(address), **headers).status_code == 401
    assert hooks.events() == before
    reply = hooks.post("postmark", postmark_bounce(address), authorization=basic(POSTMARK_KEY))
    assert reply.status_code == 200 and reply.json()["recorded"] == 1
    assert history(hooks.settings, address).subscriber.status == "bounced"
    _, other, _ = hooks.person(4)
    complaint = postmark_bounce(other, record="SpamComplaint", kind="SpamComplaint", ident=42)
    assert hooks.post("postmark", complaint, authorization=basic(POSTMARK_KEY)).json()["recorded"] == 1
    assert history(hooks.settings, other).subscriber.status == "unsubscribed"


# --- Mailgun ------------------------------------------------------------------------------------------

def mailgun(address: str, *, event: str = "failed", severity: str = "permanent", timestamp: int | None = None,
            key: str = MAILGUN_KEY, message_id: str = "20261125080005.1.ABCDEF@mg.ms-research.example.org") -> bytes:
    stamp = str(timestamp or int(time.time()))
    token = hashlib.sha256(f"{stamp}{address}{event}".encode()).hexdigest()[:50]
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({
        "signature": {"timestamp": stamp, "token": token, "signature": signature},
        "event-data": {"id": f"G9Bn5sl1TC6nu79C8C0bwg-{event}-{address}", "timestamp": float(stamp), "event": event,
                       "severity": severity, "reason": "bounce", "recipient": address, "log-level": "error",
                       "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "attempt-no": 1,
                                           "message": "5.1.1 The email account that you tried to reach does not exist",
                                           "description": ""},
                       "message": {"headers": {"to": address, "message-id": message_id,
                                               "from": "newsletter@ms-research.example.org",
                                               "subject": "New research in plain words"}}},
    }).encode()


def test_mailgun_signature_and_timestamp(hooks: Hooks) -> None:
    _, address, _ = hooks.person(5)
    before = hooks.events()
    assert hooks.post("mailgun", mailgun(address, key="key-someone-else")).status_code == 401
    old = int(time.time()) - 3600
    assert hooks.post("mailgun", mailgun(address, timestamp=old)).status_code == 401  # replayed
    assert hooks.events() == before
    temporary = hooks.post("mailgun", mailgun(address, severity="temporary"))
    assert temporary.status_code == 200 and temporary.json()["recorded"] == 0
    reply = hooks.post("mailgun", mailgun(address))
    assert reply.status_code == 200 and reply.json()["recorded"] == 1
    assert history(hooks.settings, address).events[0].source == "mailgun"


# --- SendGrid -----------------------------------------------------------------------------------------

def sendgrid(keys: Keys, events: list[dict[str, Any]], *, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    stamp = str(timestamp or int(time.time()))
    signature = keys.ec_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                  "X-Twilio-Email-Event-Webhook-Timestamp": stamp}


def test_sendgrid_signed_batch(hooks: Hooks, keys: Keys) -> None:
    _, bounced, message_id = hooks.person(6)
    _, complainer, _ = hooks.person(7)
    events = [
        {"email": bounced, "timestamp": 1764057609, "smtp-id": f"<{message_id}>", "event": "bounce",
         "category": ["newsletter"], "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==", "sg_message_id": "14c5d75ce93.dfd",
         "reason": "550 5.1.1 The email account that you tried to reach does not exist.", "status": "5.1.1",
         "type": "bounce"},
        {"email": complainer, "timestamp": 1764057610, "event": "spamreport", "sg_event_id": "EqeHsAr3v2lV5-qbpKYwrw==",
         "sg_message_id": "14c5d75ce93.dfe"},
        {"email": "stranger@example.com", "timestamp": 1764057611, "event": "spamreport", "sg_event_id": "x1"},
        {"email": complainer, "timestamp": 1764057612, "event": "delivered", "sg_event_id": "x2"},
    ]
    body, headers = sendgrid(keys, events)
    before = hooks.events()
    assert hooks.post("sendgrid", body.replace(b"spamreport", b"spamreporx"), **headers).status_code == 401
    stale_body, stale_headers = sendgrid(keys, events, timestamp=int(time.time()) - 3600)
    assert hooks.post("sendgrid", stale_body, **stale_headers).status_code == 401
    assert hooks.post("sendgrid", body).status_code == 401  # unsigned
    assert hooks.events() == before
    reply = hooks.post("sendgrid", body, **headers)
    assert reply.status_code == 200 and reply.json() == {"recorded": 2, "duplicates": 0, "skipped": 1}
    assert history(hooks.settings, bounced).subscriber.status == "bounced"
    assert history(hooks.settings, complainer).complained


def test_unconfigured_and_oversized(hooks: Hooks, settings: Settings, tmp_path: Path) -> None:
    assert hooks.post("ses", b"x" * (1024 * 1024 + 1)).status_code == 413
    assert hooks.post("ses", b"not json").status_code == 400
    assert hooks.post("nothing-here", b"{}").status_code == 404
    bare = dataclasses.replace(hooks.settings, webhook_keys=())
    with running(create_app(bare)) as url, httpx.Client(verify=TLS, base_url=url, timeout=10) as client:
        reply = client.post("/hooks/mailgun", content=b"{}")
        assert reply.status_code == 404 and "NEWSLETTER_MAILGUN_WEBHOOK_KEY" in reply.text
        assert client.get("/hooks/mailgun").status_code == 405


def test_keys_come_from_the_environment_only(project: Path) -> None:
    from newsletter.errors import ConfigError
    from newsletter.settings import load_settings

    env = {"NEWSLETTER_SECRET": "s", "NEWSLETTER_MAILGUN_WEBHOOK_KEY": MAILGUN_KEY,
           "NEWSLETTER_BOUNCE_PASSWORD": "imap-pass"}
    loaded = load_settings(project / "newsletter.toml", env=env)
    assert dict(loaded.webhook_keys) == {"mailgun": MAILGUN_KEY} and loaded.bounce_password == "imap-pass"
    assert MAILGUN_KEY not in repr(loaded) and "imap-pass" not in repr(loaded)
    toml = project / "newsletter.toml"
    toml.write_text(toml.read_text() + '\nbounce_password = "x"\n')
    with pytest.raises(ConfigError, match="bounce_password: secrets belong in the environment"):
        load_settings(toml, env=env)


def test_a_complainer_cannot_resubscribe_from_the_web(hooks: Hooks, keys: Keys) -> None:
    from newsletter.tokens import make_token
    from test_serve import form_of

    sid, address, message_id = hooks.person(3)
    complaint = json.dumps({"notificationType": "Complaint", "complaint": {
        "complainedRecipients": [{"emailAddress": address}], "feedbackId": "fb-web-1"},
        "mail": {"commonHeaders": {"messageId": f"<{message_id}>"}}})
    assert hooks.post("ses", sns(keys, "Notification", message=complaint, message_id="m-web")).status_code == 200
    token = make_token("test-secret-not-for-production-use", "resubscribe", sid, address)
    with httpx.Client(verify=TLS, base_url=hooks.url, timeout=10) as browser:
        page = browser.get(f"/resubscribe/{token}")
        assert page.status_code == 200
        action, csrf = form_of(page.text)
        reply = browser.post(action, data={"csrf": csrf})
    assert reply.status_code == 403 and "reported one of our emails as spam" in reply.text
    assert history(hooks.settings, address).subscriber.status == "unsubscribed"
