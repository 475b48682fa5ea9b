"""Amazon SNS message verification: signature (v1 SHA1 / v2 SHA256 with RSA), certificate host, topic, age.

The signing certificate is fetched by a `CertificateSource`: in production only over verified HTTPS
from an `sns.<region>.amazonaws.com` host (cached per URL); tests pass their own source holding a
certificate they made, so no test touches the network. The URL is checked before any source is asked.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import ssl
import threading
import urllib.request
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["SnsError", "CertificateSource", "HttpsCertificates", "verify_sns", "check_sns_url", "confirm_subscription",
           "SNS_MAX_AGE"]

CertificateSource = Callable[[str], bytes]  # certificate URL -> PEM bytes

SNS_MAX_AGE = dt.timedelta(hours=1)  # SNS retries keep the first Timestamp; its default policy is done in seconds
_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_MAX_CERT_BYTES = 64 * 1024


class SnsError(ValueError):
    """The message fails verification; `status` is the HTTP answer (401 forged or stale, 403 wrong topic, 400 bad)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


def check_sns_url(url: str, what: str) -> str:
    """Only https://sns.<region>.amazonaws.com/... is ever fetched."""
    parts = urlsplit(url or "")
    if parts.scheme != "https" or not _SNS_HOST.match(parts.hostname or "") or parts.port not in (None, 443):
        raise SnsError(f"{what} {url[:200]!r} is not an https:// Amazon SNS address")
    return url


class HttpsCertificates:
    """Production source: fetch over HTTPS with certificate verification, cache per URL."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._timeout = timeout

    def __call__(self, url: str) -> bytes:
        check_sns_url(url, "SigningCertURL")
        with self._lock:
            if url in self._cache:
                return self._cache[url]
        context = ssl.create_default_context()
        with urllib.request.urlopen(url, timeout=self._timeout, context=context) as response:  # noqa: S310 (checked)
            pem = response.read(_MAX_CERT_BYTES + 1)
        if len(pem) > _MAX_CERT_BYTES:
            raise SnsError("the signing certificate is too large")
        with self._lock:
            self._cache[url] = pem
        return pem


def confirm_subscription(url: str, *, timeout: float = 10.0) -> None:
    """The handshake: GET SubscribeURL (an SNS https address only)."""
    check_sns_url(url, "SubscribeURL")
    with urllib.request.urlopen(url, timeout=timeout, context=ssl.create_default_context()) as response:  # noqa: S310
        response.read(_MAX_CERT_BYTES)


def _string_to_sign(message: Mapping[str, object], kind: str) -> bytes:
    out = []
    for key in _SIGNED_KEYS[kind]:
        if key == "Subject" and key not in message:
            continue  # optional in notifications
        value = message.get(key)
        if not isinstance(value, str):
            raise SnsError(f"the SNS message has no {key} field", 400)
        out.append(f"{key}\n{value}\n")
    return "".join(out).encode("utf-8")


def _timestamp(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise SnsError("the SNS message has no Timestamp", 400)
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SnsError(f"the SNS Timestamp {value[:40]!r} is not a time", 400) from None
    if moment.tzinfo is None:
        raise SnsError("the SNS Timestamp has no time zone", 400)
    return moment


def verify_sns(message: Mapping[str, object], *, topic_arn: str | None, certificates: CertificateSource,
               now: dt.datetime | None = None, max_age: dt.timedelta = SNS_MAX_AGE) -> str:
    """Check everything SNS signs; return the message Type. SnsError says what failed."""
    kind = message.get("Type")
    if kind not in _SIGNED_KEYS:
        raise SnsError(f"unknown SNS message Type {str(kind)[:40]!r}", 400)
    if not topic_arn:
        raise SnsError("ses_topic_arn is not set, so no SNS topic is accepted", 403)
    if message.get("TopicArn") != topic_arn:
        raise SnsError(f"the message is for topic {str(message.get('TopicArn'))[:200]!r}, not ses_topic_arn", 403)
    now = now or dt.datetime.now(dt.UTC)
    age = now - _timestamp(message.get("Timestamp"))
    if age > max_age or age < -dt.timedelta(minutes=5):
        raise SnsError(f"the message is from {message.get('Timestamp')}: too old or from the future (a replay?)")
    version = message.get("SignatureVersion")
    algorithm: hashes.HashAlgorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    if version not in ("1", "2"):
        raise SnsError(f"unknown SignatureVersion {str(version)[:10]!r}")
    url = check_sns_url(str(message.get("SigningCertURL") or ""), "SigningCertURL")
    try:
        signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
    except ValueError:
        raise SnsError("the Signature is not base64") from None
    try:
        certificate = x509.load_pem_x509_certificate(certificates(url))
    except (OSError, ValueError) as exc:
        raise SnsError(f"cannot get the signing certificate {url}: {exc}", 503) from None
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsError("the signing certificate does not hold an RSA key")
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise SnsError("the signing certificate is not valid now")
    try:
        key.verify(signature, _string_to_sign(message, str(kind)), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise SnsError("the SNS signature does not match") from None
    return str(kind)
