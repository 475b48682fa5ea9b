"""Run a program whose system resolver sees only the test's DNS zone: a private network namespace.

Debian's opendkim tools look keys up through libc's resolver (/etc/resolv.conf), which no option
points elsewhere. So `run_with_zone` starts `unshare --net --mount` (root only), and inside it this
file brings up loopback, bind-mounts a resolv.conf naming 127.0.0.1 over /etc/resolv.conf (only
in that mount namespace), serves the zone on 127.0.0.1:53 and runs the program. Nothing inside
can reach any other network, and nothing outside the namespace changes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["sandbox_unavailable", "run_with_zone"]

HERE = Path(__file__).resolve().parent


def sandbox_unavailable() -> str | None:
    """Why the sandbox cannot run here (a skip reason), or None when it can."""
    if shutil.which("unshare") is None:
        return "util-linux's unshare is not installed"
    probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        return "cannot create network namespaces here (needs root, as in CI): " + probe.stderr.decode()[:200]
    return None


def run_with_zone(zone: dict[str, list[tuple[str, str]]], argv: list[str], *, stdin: bytes = b"",
                  timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    """Run argv with the zone as its only DNS; returns the program's exit code and output."""
    with tempfile.TemporaryDirectory(prefix="dns-sandbox-") as work:
        zone_file = Path(work) / "zone.json"
        zone_file.write_text(json.dumps(zone), encoding="utf-8")
        return subprocess.run(["unshare", "--net", "--mount", sys.executable, __file__, str(zone_file), *argv],
                              input=stdin, capture_output=True, timeout=timeout)


def _loopback_up() -> None:
    """`ip link set lo up` without needing iproute2: SIOCGIFFLAGS / SIOCSIFFLAGS on "lo"."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, 0x8913, request))[1]
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH14x", b"lo", flags | 0x1))


def _inside(zone_file: str, argv: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    from dns_server import dns_server  # noqa: PLC0415 - this file is also run as a script

    _loopback_up()
    with open(zone_file, encoding="utf-8") as fh:
        zone = {name: [tuple(r) for r in records] for name, records in json.load(fh).items()}
    with tempfile.NamedTemporaryFile("w", prefix="resolv-", suffix=".conf", delete=False) as conf:
        conf.write("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    try:
        # The mount namespace from `unshare --mount` is private: this bind mount is invisible outside.
        subprocess.run(["mount", "--bind", conf.name, "/etc/resolv.conf"], check=True)
        with dns_server(zone, port=53) as (_, resolver):  # type: ignore[arg-type]
            code = subprocess.run(argv, stdin=sys.stdin.buffer, timeout=25).returncode
            if os.environ.get("DNS_SANDBOX_DEBUG"):
                print("queries:", resolver.queries, file=sys.stderr)
            return code
    finally:
        os.unlink(conf.name)


if __name__ == "__main__":
    sys.exit(_inside(sys.argv[1], sys.argv[2:]))
