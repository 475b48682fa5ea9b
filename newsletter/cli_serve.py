"""The serving edge: `newsletter serve` runs newsletter.serve's app under Uvicorn.

Registered by cli.py (`for c in COMMANDS: cli.add_command(c)`); the command gets cli's `Context` as
the click object (`pass_obj`), so this module does not import cli at load time.
"""

from __future__ import annotations

import logging
import sys
from typing import Any
from urllib.parse import urlsplit

import click

__all__ = ["COMMANDS", "serve_command"]


def _run(settings: Any, *, host: str, port: int, proxy_headers: bool, forwarded_allow_ips: str,
         root_path: str) -> None:
    import uvicorn

    from .serve import create_app

    app = create_app(settings)  # a missing NEWSLETTER_SECRET stops here, before the port opens
    # Uvicorn's own access log would print token URLs; ours (newsletter.serve.access) masks them.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    served = logging.getLogger("newsletter.serve")
    served.addHandler(handler)
    served.setLevel(logging.INFO)
    served.propagate = False
    served.info("serving %s on http://%s:%d%s; public URL %s", settings.site_name, host, port, root_path,
                settings.public_base_url)
    public_path = urlsplit(settings.public_base_url).path.rstrip("/")
    if public_path != root_path:
        # Page links are built under --root-path; emails link under public_base_url. They must agree.
        served.warning("public_base_url's path is %r but --root-path is %r; behind a proxy that strips %r, "
                       "links on the pages will be wrong (see docs/serving.md)", public_path, root_path, public_path)
    uvicorn.run(app, host=host, port=port, proxy_headers=proxy_headers, forwarded_allow_ips=forwarded_allow_ips,
                root_path=root_path, access_log=False, server_header=False, log_level="info")


@click.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option("--proxy-headers/--no-proxy-headers", default=True, show_default=True,
              help="Take the client address and https scheme from X-Forwarded-For/-Proto "
                   "(only from --forwarded-allow-ips).")
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True, metavar="IPS",
              help="Comma-separated proxy addresses whose X-Forwarded-* headers are trusted.")
@click.option("--root-path", default="", metavar="PREFIX",
              help="The path prefix the reverse proxy strips, e.g. /newsletter.")
@click.pass_obj
def serve_command(obj: Any, host: str, port: int, proxy_headers: bool, forwarded_allow_ips: str,
                  root_path: str) -> None:
    """Serve one-click unsubscribe, the web archive and the subscribe form (put HTTPS in front)."""
    if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
        raise click.BadParameter("use a path like /newsletter (leading slash, no trailing slash)",
                                 param_hint="--root-path")
    _run(obj.settings, host=host, port=port, proxy_headers=proxy_headers,
         forwarded_allow_ips=forwarded_allow_ips, root_path=root_path)


COMMANDS = [serve_command]
