"""The outside programs the references need (npm mjml, Postfix's smtp-sink/smtp-source): found, never installed
silently."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .project import WORK

__all__ = [
    "INSTALL_MJML",
    "INSTALL_POSTFIX",
    "SinkCounter",
    "Tool",
    "aiosmtpd_sink",
    "free_port",
    "install",
    "mjml_cli",
    "node",
    "postfix_sink",
    "smtp_sink",
    "smtp_source",
]

INSTALL_MJML = "npm install --prefix benchmarks/.work mjml"
INSTALL_POSTFIX = "apt-get install postfix"
INSTALL_NODE = "apt-get install nodejs npm"


@dataclass(frozen=True)
class Tool:
    """A program (or why it is missing and the exact command that installs it)."""

    name: str
    argv: tuple[str, ...] | None
    missing: str = ""
    version: str = ""

    @property
    def ok(self) -> bool:
        return self.argv is not None


def node() -> Tool:
    path = shutil.which("node")
    if path is None:
        return Tool("node", None, f"node is not installed; install it with `{INSTALL_NODE}`")
    return Tool("node", (path,))


def mjml_cli() -> Tool:
    """The npm `mjml` CLI installed under benchmarks/.work (never a global one: its version would drift)."""
    n = node()
    if not n.ok:
        return Tool("mjml", None, n.missing + f", then `{INSTALL_MJML}`")
    package = WORK / "node_modules" / "mjml"
    script = package / "bin" / "mjml"
    if not script.exists():
        return Tool("mjml", None, f"the npm mjml CLI is not installed; install it with `{INSTALL_MJML}` "
                                  "(or run the benchmarks with --install)")
    version = json.loads((package / "package.json").read_text(encoding="utf-8")).get("version", "?")
    return Tool("mjml", (*n.argv, str(script)), version=version)  # type: ignore[misc]


def _sbin(name: str) -> Tool:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/lib/postfix/{name}")
                                       if os.access(p, os.X_OK)), None)
    if path is None:
        return Tool(name, None, f"Postfix's {name} is not installed; install it with `{INSTALL_POSTFIX}` "
                                "(the benchmarks only run its test programs, never the Postfix daemon)")
    return Tool(name, (path,))


def smtp_sink() -> Tool:
    return _sbin("smtp-sink")


def smtp_source() -> Tool:
    return _sbin("smtp-source")


def install(*, out=print) -> None:
    """--install: run the install commands for what is missing, saying each one first."""
    if not mjml_cli().ok:
        if not node().ok:
            out(f"node/npm missing: run `{INSTALL_NODE}` as root first; not installing system packages myself")
        else:
            out(f"running: {INSTALL_MJML}")
            WORK.mkdir(parents=True, exist_ok=True)
            subprocess.run(["npm", "install", "--prefix", str(WORK), "mjml"], check=True)
    if not (smtp_sink().ok and smtp_source().ok):
        if os.geteuid() != 0:
            out(f"smtp-sink/smtp-source missing: run `{INSTALL_POSTFIX}` as root")
        else:
            out(f"running: {INSTALL_POSTFIX} -y (DEBIAN_FRONTEND=noninteractive)")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(["apt-get", "install", "-y", "postfix"], check=True, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class SinkCounter:
    """Reads smtp-sink's `-c` counters (mesg=N) from its output file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def messages(self) -> int:
        try:
            text = self.path.read_bytes().decode("ascii", "replace")
        except OSError:
            return 0
        found = [int(x) for x in re.findall(r"mesg=(\d+)", text)]
        return max(found, default=0)


@contextmanager
def postfix_sink(tool: Tool, workdir: Path) -> Iterator[tuple[int, SinkCounter]]:
    """smtp-sink on 127.0.0.1:<free port> (discards every message; -c counts them); stopped by its pid."""
    assert tool.argv is not None
    port = free_port()
    counter_file = workdir / f"smtp-sink-{port}.out"
    argv = [*tool.argv, "-c"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]  # smtp-sink refuses to run as root without a user to switch to
    argv += [f"127.0.0.1:{port}", "1000"]
    with counter_file.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port)
        yield port, SinkCounter(counter_file)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a helper process, killing it if it does not exit within 5 s."""
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def aiosmtpd_sink(python: str) -> Iterator[int]:
    """aiosmtpd's own Sink handler in a separate process (in ours it would share our GIL), stopped by its pid."""
    port = free_port()
    proc = subprocess.Popen([python, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink",
                             "-l", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, timeout=15.0)
        yield port
    finally:
        _stop(proc)
