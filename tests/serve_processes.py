"""Shared by the multi-process serving tests: a site on disk, and `newsletter serve` run as separate processes.

Each server is a real `python -m newsletter serve` (the command's own Uvicorn configuration) on its own
127.0.0.1 port, all over one database: what two hosts behind one proxy look like to the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from http_client import TLS

from newsletter.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SECRET = "test-secret-not-for-production-use"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(root: Path, *, database: str | None = None, public: str = "http://127.0.0.1") -> Path:
    """The sample newsletter.toml with a plain-http public URL (so the desk cookie is not Secure-only) and,
    when given, another `database` (a PostgreSQL URL)."""
    config = root / "newsletter.toml"
    text = re.sub(r'(?m)^public_base_url = ".*"$', f'public_base_url = "{public}"', config.read_text("utf-8"))
    if database is not None:
        text = re.sub(r'(?m)^database = ".*"$', f'database = "{database}"', text)
    config.write_text(text, encoding="utf-8")
    return config


STORES = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]


def postgres_site(template: Path, root: Path, url: str, *,
                  accounts_: tuple[tuple[str, str, str, str], ...] = ()) -> Iterator[Settings]:
    """`template`'s files (not its SQLite database) in `root`, over the fresh PostgreSQL database at `url`:
    schema created, the sample subscribers imported, `accounts_` added. Closes this process's pools after."""
    from newsletter.jobs import accounts
    from newsletter.store import open_store, subscribers
    from newsletter.store.pgstore import PostgresStore, close_shared

    shutil.copytree(template, root, ignore=shutil.ignore_patterns("var"))
    config = write_config(root, database=url)
    PostgresStore(url, env={}).upgrade()
    settings = dataclasses.replace(load_settings(config, env={"NEWSLETTER_SECRET": SECRET}),
                                   public_base_url="http://127.0.0.1")
    try:
        with open_store(settings).connection() as conn:
            subscribers.import_csv(conn, root / "content" / "subscribers.csv")
        for email_, name, role, password in accounts_:
            accounts.add(settings, email_, name=name, role=role, password=password)
        yield settings
    finally:
        close_shared()


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(PYTHONPATH=str(REPO), NEWSLETTER_SECRET=SECRET, **extra)
    return env


def wait_until_answering(url: str, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while True:
        assert proc.poll() is None, f"the server exited:\n{log.read_text('utf-8', 'replace')}"
        assert time.monotonic() < deadline, f"the server did not start:\n{log.read_text('utf-8', 'replace')}"
        try:
            if httpx.get(f"{url}/unsubscribe", verify=TLS, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)


@contextlib.contextmanager
def serve_processes(config: Path, count: int = 2, *, logs: Path) -> Iterator[list[str]]:
    """`count` `newsletter serve` processes over `config`'s site; yields their base URLs once all answer."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for n in range(count):
            port = free_port()
            log = (logs / f"serve-{n}.log").open("wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "newsletter", "--config", str(config), "serve", "--port", str(port)],
                cwd=config.parent, env=cli_env(), stdout=log, stderr=subprocess.STDOUT))
            log.close()
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        for proc, url, n in zip(procs, urls, range(count)):
            wait_until_answering(url, proc, logs / f"serve-{n}.log", deadline)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextlib.contextmanager
def workers_on_one_port(command: str, config: Path, workers: int, *, logs: Path) -> Iterator[str]:
    """`command` "uvicorn": `uvicorn --workers N` (Uvicorn's own command line, its defaults otherwise) over the
    app factory; "newsletter": `newsletter serve --workers N`. Yields the URL once every worker has built its
    app (each logs its own "signing links" line, with its process id; `newsletter serve`'s parent too)."""
    port = free_port()
    log_path = logs / "serve-workers.log"
    if command == "uvicorn":
        argv = ["-m", "uvicorn", "--factory", "newsletter.serve:app_from_environment", "--workers", str(workers),
                "--host", "127.0.0.1", "--port", str(port)]
        builders = workers
    else:
        argv = ["-m", "newsletter", "--config", str(config), "serve", "--workers", str(workers), "--port", str(port)]
        builders = workers + 1
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, *argv], cwd=config.parent, env=cli_env(NEWSLETTER_CONFIG=str(config)),
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(worker_pids(log_path.read_text("utf-8", "replace"), "signing links")) < builders:
            assert proc.poll() is None, log_path.read_text("utf-8", "replace")
            assert time.monotonic() < deadline, "the workers did not start:\n" + log_path.read_text("utf-8", "replace")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(url, proc, log_path, deadline)
        yield url
    finally:
        proc.terminate()
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise AssertionError("SIGTERM did not stop the server in 20 s") from None
    # SIGTERM stops every worker gracefully (no stray process keeps the port).
    assert code == 0, log_path.read_text("utf-8", "replace")
    pids = worker_pids(log_path.read_text("utf-8", "replace"), "signing links")
    assert not [pid for pid in pids if _running(int(pid))], f"workers left running: {pids}"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def worker_pids(log: str, containing: str) -> set[str]:
    """Process ids of the log lines (app_from_environment's format) that contain `containing`."""
    return set(re.findall(r"\[(\d+)\] newsletter\.serve[.\w]*: [^\n]*" + re.escape(containing), log))


def server_logs(logs: Path) -> str:
    return "\n".join(p.read_text("utf-8", "replace") for p in sorted(logs.glob("serve-*.log")))


ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"


async def post_one_click(urls: list[str], paths: list[str], concurrency: int) -> list[tuple[int, float]]:
    """POST RFC 8058's one-click body to every path: `concurrency` clients, each on its own keep-alive
    connection to one of `urls` in turn, taking the next path as soon as it has its answer.
    Returns (status, seconds) per path, in order; status 0 when the connection failed (never retried).

    A small HTTP/1.1 client on asyncio streams: httpx's pool, at 200 connections, was itself the
    bottleneck (about 60 requests/s on this machine, against 450+ with this client).
    """
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for item in enumerate(paths):
        queue.put_nowait(item)
    results: list[tuple[int, float]] = [(0, 0.0)] * len(paths)

    async def client(number: int) -> None:
        target = urlsplit(urls[number % len(urls)])
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while not queue.empty():
            n, path = queue.get_nowait()
            started = time.perf_counter()
            try:
                if reader is None or writer is None:
                    reader, writer = await asyncio.open_connection(target.hostname, target.port)
                writer.write(f"POST {path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
                             "Content-Type: application/x-www-form-urlencoded\r\n"
                             f"Content-Length: {len(ONE_CLICK_BODY)}\r\n\r\n".encode("ascii") + ONE_CLICK_BODY)
                await writer.drain()
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
                status = int(head.split(" ", 2)[1])
                length = re.search(r"\r\ncontent-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                if "\r\nconnection: close" in head:
                    writer.close()
                    reader = writer = None
                results[n] = (status, time.perf_counter() - started)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                print(f"request {n} to {target.netloc} failed: {exc!r}")
                results[n] = (0, time.perf_counter() - started)
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(client(number) for number in range(concurrency)))
    return results
