"""A real Uvicorn server for tests: an app served on an ephemeral 127.0.0.1 port in a thread.

Shared by the serve, desk, audit, proof, webhook and accessibility tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

__all__ = ["running", "finish_stopping"]

#: How often the server looks whether it should stop (Uvicorn's own loop looks every 0.1 s).
_TICK = 0.01


class _Server(uvicorn.Server):
    """Uvicorn's server, noticing `should_exit` within _TICK: a test starts and stops one per test."""

    async def main_loop(self) -> None:
        ticks = 0
        # on_tick counts Uvicorn's 0.1 s ticks (it refreshes the Date header every 10th): give it those.
        while not await self.on_tick(ticks // round(0.1 / _TICK)):
            await asyncio.sleep(_TICK)
            ticks = (ticks + 1) % 8_640_000


#: Servers told to stop whose threads are finishing Uvicorn's shutdown (it waits 0.1 s for connections).
_stopping: list[threading.Thread] = []


def finish_stopping(timeout: float = 10) -> None:
    """Wait for the servers that are still shutting down (the next `running` and the session's end do)."""
    while _stopping:
        _stopping.pop().join(timeout)


@contextlib.contextmanager
def running(app: ASGIApp, **options: object) -> Iterator[str]:
    """Serve `app` with Uvicorn on an ephemeral 127.0.0.1 port in a thread; yields its base URL.

    On leaving, the server stops listening at once; the rest of its shutdown (Uvicorn gives open
    connections 0.1 s) goes on while the test goes on, and is waited for before the next server starts.
    """
    finish_stopping()
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", **options)  # type: ignore[arg-type]
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        deadline = time.monotonic() + 10
        while thread.is_alive() and any(listener.is_serving() for listener in server.servers):
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)
        _stopping.append(thread)
