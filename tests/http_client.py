"""One TLS context for the tests' HTTP clients.

httpx builds a new TLS context for every Client and every httpx.get or post, loading certifi's CA bundle:
about 30 ms of CPU each, more on a busy machine, paid a few hundred times by the web tests and by the
polls that wait for serving processes to start (though every test server speaks plain http on 127.0.0.1).
`TLS` is the same kind of context (certifi's CAs, certificates and host names verified), made once:
pass it as `verify=TLS`.
"""

from __future__ import annotations

import ssl

import certifi

__all__ = ["TLS"]

TLS = ssl.create_default_context(cafile=certifi.where())
