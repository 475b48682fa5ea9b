"""Secrets kept out of output: URLs with every credential replaced by ***, safe to print or log."""

from __future__ import annotations

import re

__all__ = ["mask_url", "SECRET_PARAMETERS"]

#: Query parameters that hold credentials; everything after one is masked (a value may hold `&`, `#` or `@`).
SECRET_PARAMETERS = ("password", "passwd", "pass", "pwd", "secret", "token", "apikey", "api_key", "key", "auth")
_SECRET_PARAM = re.compile(r"[?&;](?:" + "|".join(SECRET_PARAMETERS) + r")=", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with every credential replaced by *** (`user:pass@` -> `user:***@`, `?password=...` -> `?password=***`).

    A credential in the query is masked to the end of the URL first, so an `@` inside it cannot be
    taken for the end of the user information. Then everything between `//` and the LAST `@` is user
    information, so a password holding `@`, `/` or `#` is masked whole; only the part before the first
    `:` (the user name) is kept.
    """
    secret = _SECRET_PARAM.search(url)
    if secret:
        url = url[: secret.end()] + "***"
    scheme, sep, rest = url.partition("//")
    if sep and "@" in rest:
        userinfo, _, hostpart = rest.rpartition("@")
        user = userinfo.split(":", 1)[0]
        url = f"{scheme}//{user}:***@{hostpart}" if ":" in userinfo else f"{scheme}//{userinfo}@{hostpart}"
    return url
