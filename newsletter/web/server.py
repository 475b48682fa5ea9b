"""Uvicorn as `newsletter serve` runs it: connection limits, and a read deadline for each request head.

Uvicorn alone waits for ever for a request head that arrives a byte at a time (its keep-alive
timer is reset by every byte), so a few thousand slow clients can use up the file descriptors.
Here each connection has `head_deadline` seconds from opening, or from the end of the previous
answer, to send a complete request head; then it is closed. A reverse proxy in front (nginx,
Caddy) is still expected: it buffers slow clients and terminates TLS (docs/security.md).

`run_workers` serves one configuration on several forked processes sharing one listening socket
(`newsletter serve --workers N`): the app keeps all its state in the database, so they answer as one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HEAD_DEADLINE", "KEEP_ALIVE", "MAX_CONNECTIONS", "MAX_HEAD_BYTES", "uvicorn_config", "deadline_protocol",
           "run_workers"]

#: Seconds a client has to send a complete request head.
HEAD_DEADLINE = 30.0
#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE = 5
#: Connections (and tasks) past which Uvicorn answers 503 at once.
MAX_CONNECTIONS = 500
#: Bytes of request head h11 buffers before answering 400 (Uvicorn's default, stated here on purpose).
MAX_HEAD_BYTES = 16 * 1024


class _DeadlineH11Protocol(H11Protocol):
    head_deadline: float = HEAD_DEADLINE
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_deadline, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing() and self._waiting_for_head():
            self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if not self._waiting_for_head():  # a whole head arrived: the app's own deadlines apply now
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        self._arm_head_timer()  # before super(), which may already read a pipelined request's head
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


def deadline_protocol(head_deadline: float = HEAD_DEADLINE) -> type[H11Protocol]:
    """Uvicorn's h11 protocol with a read deadline of `head_deadline` seconds for each request head."""
    return type("DeadlineH11Protocol", (_DeadlineH11Protocol,), {"head_deadline": float(head_deadline)})


def uvicorn_config(app: Any, *, host: str, port: int, head_deadline: float = HEAD_DEADLINE,
                   max_connections: int = MAX_CONNECTIONS, **options: Any) -> uvicorn.Config:
    """The Uvicorn configuration `newsletter serve` uses (tests run the same one)."""
    return uvicorn.Config(app, host=host, port=port, http=deadline_protocol(head_deadline),
                          timeout_keep_alive=KEEP_ALIVE, limit_concurrency=max_connections,
                          h11_max_incomplete_event_size=MAX_HEAD_BYTES, **options)


#: A worker that dies sooner than this after starting is not restarted (a crash loop, not a one-off).
_MIN_WORKER_LIFE = 5.0
log = logging.getLogger("newsletter.serve")


def run_workers(config: uvicorn.Config, workers: int, *, worker_config: Callable[[], uvicorn.Config]) -> None:
    """Serve on `workers` processes: this one binds `config`'s socket, forks the workers and restarts one
    that dies (unless it died at once).

    Each worker calls `worker_config()` after the fork, so it builds its own app (and its own database
    connections: nothing open is shared across the fork). SIGTERM or SIGINT stops them all gracefully.
    """
    sock = config.bind_socket()
    children: dict[int, float] = {}
    stopping = False

    def start() -> None:
        pid = os.fork()
        if pid == 0:  # the worker: Uvicorn installs its own SIGINT/SIGTERM handlers for a graceful stop
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                uvicorn.Server(worker_config()).run(sockets=[sock])
            except BaseException:  # noqa: BLE001 - logged; the parent decides about a restart
                log.exception("worker %d stopped with an error", os.getpid())
                code = 1
            finally:
                os._exit(code)
        children[pid] = time.monotonic()

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(workers):
            start()
        log.info("serving on %d worker processes: %s", workers, ", ".join(str(pid) for pid in children))
        while children:
            pid, status = os.wait()
            started = children.pop(pid, None)
            if started is None or stopping:
                continue
            lived = time.monotonic() - started
            log.warning("worker %d exited (status %d) after %.0f s%s", pid, os.waitstatus_to_exitcode(status), lived,
                        "; starting another" if lived >= _MIN_WORKER_LIFE else "; not restarted (it died at once)")
            if lived >= _MIN_WORKER_LIFE:
                start()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
