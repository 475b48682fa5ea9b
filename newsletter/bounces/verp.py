"""VERP: a signed envelope sender per (issue, subscriber), so a bounce names who it is about.

`bounces@bounce.example.org` becomes `bounces+2026-11-25.42.<sig>@bounce.example.org`; the signature
(HMAC-SHA256 of the pair under NEWSLETTER_SECRET, 16 hex digits) means a forged bounce cannot name
anyone. Some servers lower-case local parts, so the token is compared case-insensitively.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

__all__ = ["VerpTarget", "ForgedVerp", "verp_address", "read_verp", "Verp"]

_SIG_HEX = 16
_TOKEN = re.compile(r"^(?P<issue>\d{4}-\d{2}-\d{2}(?:-[a-z0-9-]+)?)\.(?P<sid>\d{1,12})\.(?P<sig>[0-9a-f]+)$")


class ForgedVerp(ValueError):
    """An address in our VERP shape whose signature does not match: someone made it up."""


@dataclass(frozen=True)
class VerpTarget:
    issue_id: str
    subscriber_id: int


def _signature(secret: str, issue_id: str, subscriber_id: int) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"verp\0{issue_id.lower()}\0{subscriber_id}".encode(), hashlib.sha256)
    return mac.hexdigest()[:_SIG_HEX]


class Verp:
    """The bounce address and secret, ready to encode and read envelope senders."""

    def __init__(self, secret: str, bounce_address: str) -> None:
        local, at, domain = bounce_address.rpartition("@")
        if not at or not local or "+" in local:
            raise ValueError(f"{bounce_address!r}: a VERP bounce address looks like bounces@bounce.example.org")
        self._secret, self.local, self.domain = secret, local.lower(), domain.lower()

    def address(self, issue_id: str, subscriber_id: int) -> str:
        return f"{self.local}+{issue_id}.{subscriber_id}.{_signature(self._secret, issue_id, subscriber_id)}@{self.domain}"

    def read(self, address: str) -> VerpTarget | None:
        """The pair an address names; None if it is not one of ours; ForgedVerp if its signature is wrong."""
        local, _, domain = address.strip().strip("<>").lower().rpartition("@")
        base, plus, token = local.partition("+")
        if domain != self.domain or base != self.local or not plus:
            return None
        match = _TOKEN.match(token)
        if not match:
            raise ForgedVerp(f"{address}: not a VERP address this newsletter made")
        issue_id, subscriber_id = match.group("issue"), int(match.group("sid"))
        if not hmac.compare_digest(match.group("sig"), _signature(self._secret, issue_id, subscriber_id)):
            raise ForgedVerp(f"{address}: the VERP signature does not match (forged or from another installation)")
        return VerpTarget(issue_id, subscriber_id)


def verp_address(secret: str, bounce_address: str, issue_id: str, subscriber_id: int) -> str:
    return Verp(secret, bounce_address).address(issue_id, subscriber_id)


def read_verp(secret: str, bounce_address: str, address: str) -> VerpTarget | None:
    return Verp(secret, bounce_address).read(address)
