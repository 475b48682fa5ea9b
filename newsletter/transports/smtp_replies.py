"""What an SMTP refusal means for the recipient: the only place that reads SMTP reply codes for bounces."""

from __future__ import annotations

import re

__all__ = ["is_bounce"]

_BOUNCE_CODES = frozenset({550, 551, 553})
_ENHANCED_STATUS = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def is_bounce(code: int | None, reason: str) -> bool:
    """Does this permanent failure mean the address does not exist (5.1.x, or 550/551/553 without one)?"""
    enhanced = _ENHANCED_STATUS.match(reason or "")
    if enhanced:
        # "550 5.7.1 spam" is a policy refusal, not a bad address: the enhanced code decides.
        return enhanced.group(1) == "5" and enhanced.group(2) == "1"
    return code in _BOUNCE_CODES
