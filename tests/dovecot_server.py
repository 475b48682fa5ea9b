"""A real IMAP server for tests: Debian's dovecot on 127.0.0.1, a throwaway user, a trustme certificate."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "bouncer", "throwaway-test-password"


@dataclass(frozen=True)
class Dovecot:
    port: int
    ca_path: Path
    home: Path

    def url(self, folder: str = "INBOX") -> str:
        return f"imaps://{USER}@127.0.0.1:{self.port}/{folder}?cafile={self.ca_path}"

    def client(self):  # type: ignore[no-untyped-def]
        import imapclient

        context = ssl.create_default_context(cafile=str(self.ca_path))
        client = imapclient.IMAPClient("127.0.0.1", port=self.port, ssl=True, ssl_context=context, timeout=20)
        client.login(USER, PASSWORD)
        return client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_CONFIG = """
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
auth_mechanisms = plain
# A refused login is answered at once, not after dovecot's default 2 s (a guard against guessing).
auth_failure_delay = 0
disable_plaintext_auth = yes
first_valid_uid = 1
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # No growing delay after repeated refused logins from 127.0.0.1 (dovecot's auth penalty).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%u
}}
"""


@contextmanager
def dovecot_server() -> Iterator[Dovecot]:
    """Start dovecot in the foreground (our child, stopped by its pid); skip if Debian's dovecot is missing."""
    if not os.path.exists(DOVECOT):
        pytest.skip("dovecot-imapd is not installed (.ci/run installs it: apt-get install dovecot-imapd)")
    import trustme

    # Outside pytest's 0700 tmp tree: dovecot's mail process runs as the mail user and must reach its home.
    base = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    os.chmod(base, 0o755)
    try:
        account = pwd.getpwnam("dovecot") if os.getuid() == 0 else pwd.getpwuid(os.getuid())
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(base / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(base / "cert.pem"))
        ca.cert_pem.write_to_path(str(base / "ca.pem"))
        (base / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        home = base / "home" / USER
        home.mkdir(parents=True)
        os.chown(base / "home", account.pw_uid, account.pw_gid)
        os.chown(home, account.pw_uid, account.pw_gid)
        port = _free_port()
        (base / "dovecot.conf").write_text(_CONFIG.format(d=base, port=port, uid=account.pw_uid, gid=account.pw_gid))
        process = subprocess.Popen([DOVECOT, "-F", "-c", str(base / "dovecot.conf")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log = (base / "dovecot.log").read_text() if (base / "dovecot.log").exists() else ""
                        raise RuntimeError(f"dovecot did not start: {process.stderr.read() if process.stderr else ''}"
                                           f" {log}") from None
                    time.sleep(0.05)
            yield Dovecot(port, base / "ca.pem", home)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(base, ignore_errors=True)
