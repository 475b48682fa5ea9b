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
         root_path: str, head_deadline: float, max_connections: int, workers: int = 1) -> None:
    import uvicorn

    from .serve import create_app
    from .web.security import EscapingFormatter
    from .web.server import run_workers, uvicorn_config

    # Uvicorn's own access log would print token URLs; ours (newsletter.serve.access) masks them.
    # Control characters are escaped in every line, so a visitor cannot forge log lines.
    handler = logging.StreamHandler(sys.stderr)
    pid = " [%(process)d]" if workers > 1 else ""  # which worker wrote the line
    handler.setFormatter(EscapingFormatter(f"%(asctime)s %(levelname)s{pid} %(name)s: %(message)s"))
    served = logging.getLogger("newsletter.serve")
    served.addHandler(handler)
    served.setLevel(logging.INFO)
    served.propagate = False
    app = create_app(settings)  # a missing or weak NEWSLETTER_SECRET stops here, before the port opens
    served.info("serving %s on http://%s:%d%s; public URL %s", settings.site_name, host, port, root_path,
                settings.public_base_url)
    public_path = urlsplit(settings.public_base_url).path.rstrip("/")
    if public_path != root_path:
        # Page links are built under --root-path; emails link under public_base_url. They must agree.
        served.warning("public_base_url's path is %r but --root-path is %r; behind a proxy that strips %r, "
                       "links on the pages will be wrong (see docs/serving.md)", public_path, root_path, public_path)

    def make_config(app: Any = app) -> uvicorn.Config:
        return uvicorn_config(app, host=host, port=port, head_deadline=head_deadline, max_connections=max_connections,
                              proxy_headers=proxy_headers, forwarded_allow_ips=forwarded_allow_ips,
                              root_path=root_path, access_log=False, server_header=False, log_level="info")

    if workers == 1:
        uvicorn.Server(make_config()).run()
        return
    # Every worker builds its own app after the fork (its own database connections); they share the database.
    run_workers(make_config(), workers, worker_config=lambda: make_config(create_app(settings)))


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
@click.option("--header-timeout", "head_deadline", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              metavar="SECONDS", help="Close a connection that has not sent a complete request head by then.")
@click.option("--max-connections", type=click.IntRange(min=1), default=500, show_default=True,
              help="Open connections past which requests are answered 503 at once.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes serving the port; all state is in the database (docs/serving.md).")
@click.pass_obj
def serve_command(obj: Any, host: str, port: int, proxy_headers: bool, forwarded_allow_ips: str,
                  root_path: str, head_deadline: float, max_connections: int, workers: int) -> None:
    """Serve one-click unsubscribe, the web archive and the subscribe form (put HTTPS in front)."""
    if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
        raise click.BadParameter("use a path like /newsletter (leading slash, no trailing slash)",
                                 param_hint="--root-path")
    _run(obj.settings, host=host, port=port, proxy_headers=proxy_headers,
         forwarded_allow_ips=forwarded_allow_ips, root_path=root_path, head_deadline=head_deadline,
         max_connections=max_connections, workers=workers)


COMMANDS = [serve_command]
