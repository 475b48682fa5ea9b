"""Secrets kept out of output: URLs with any password replaced by ***, safe to print or log."""

from __future__ import annotations

import re

__all__ = ["mask_url"]

_SECRET_PARAM = re.compile(r"(?P<prefix>[?&](?:password|pass|secret|token)=)[^&#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with any password replaced by *** (`user:pass@` -> `user:***@`), safe to print.

    Everything between `//` and the LAST `@` is user information, so a password holding `@`, `/` or `#`
    is masked whole; only the part before the first `:` (the user name) is kept.
    """
    scheme, sep, rest = url.partition("//")
    if sep and "@" in rest:
        userinfo, _, hostpart = rest.rpartition("@")
        user = userinfo.split(":", 1)[0]
        url = f"{scheme}//{user}:***@{hostpart}" if ":" in userinfo else f"{scheme}//{userinfo}@{hostpart}"
    return _SECRET_PARAM.sub(r"\g<prefix>***", url)
