"""A throwaway PostgreSQL cluster (initdb + pg_ctl in a temp directory, 127.0.0.1) for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PG_BIN", "PostgresInstance", "PostgresUnavailable", "postgres_instance", "unavailable_reason"]

PG_BIN = Path(os.environ.get("NEWSLETTER_PG_BIN", "/usr/lib/postgresql/15/bin"))
# initdb refuses to run as root; Debian's postgresql package creates this unprivileged user.
RUN_AS = "postgres"
SUPERUSER = "newsletter"
START_TIMEOUT = 30


class PostgresUnavailable(RuntimeError):
    """No throwaway PostgreSQL can run here: the reason, and what to do."""


@dataclass(frozen=True)
class PostgresInstance:
    """A running cluster: where it listens and the URL of its (empty) first database."""

    host: str
    port: int
    user: str
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"


def unavailable_reason() -> str | None:
    """Why no throwaway PostgreSQL can start on this machine, or None if it can."""
    for tool in ("initdb", "pg_ctl"):
        if not os.access(PG_BIN / tool, os.X_OK):
            return f"{PG_BIN / tool} is missing (apt-get install postgresql; .ci/run does)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            return f"running as root and there is no {RUN_AS!r} user to run initdb as (Debian's postgresql package adds it)"
        if shutil.which("runuser") is None:
            return "running as root and runuser (util-linux) is missing"
    return None


def _as_owner(argv: list[str]) -> list[str]:
    """The command, run as the unprivileged cluster owner when we are root (initdb refuses root)."""
    return ["runuser", "-u", RUN_AS, "--", *argv] if os.geteuid() == 0 else argv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(_as_owner(argv), capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise PostgresUnavailable(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")


@contextlib.contextmanager
def postgres_instance() -> Iterator[PostgresInstance]:
    """Start a cluster with trust authentication on 127.0.0.1 only; stop it (pg_ctl -m immediate) and delete it."""
    reason = unavailable_reason()
    if reason:
        raise PostgresUnavailable(reason)
    root = Path(tempfile.mkdtemp(prefix="newsletter-pg-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(RUN_AS)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data = root / "data"
    port = _free_port()
    started = False
    try:
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
              "--no-sync", "--locale=C"], "initdb")
        # Unix socket in our own directory (not /var/run/postgresql, which may not exist or be shared);
        # fsync off: a test cluster's durability is worthless and fsync is slow on a loaded machine.
        options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off -c max_connections=100"
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "server.log"),
              "-w", "-t", str(START_TIMEOUT), "start"], "pg_ctl start")
        started = True
        yield PostgresInstance(host="127.0.0.1", port=port, user=SUPERUSER, data_dir=data)
    finally:
        if started:
            subprocess.run(_as_owner([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)
