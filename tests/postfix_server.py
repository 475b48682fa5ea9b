"""A private Postfix instance on 127.0.0.1 (STARTTLS, Maildir delivery) for tests and benchmarks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = [
    "DEFAULT_CONFIG",
    "SLOTS_ROOT",
    "PostfixInstance",
    "PostfixUnavailable",
    "postfix_instance",
    "register_slots",
    "unavailable_reason",
]

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
DEFAULT_CONFIG = Path("/etc/postfix")
# `postfix -c DIR` only accepts a DIR listed, as the exact string, in the default main.cf's
# alternate_config_directories. A list that grows with every random temp directory would be a mess, so the
# instances live in a few fixed slots under a root-owned directory (an entry under /tmp could be created by
# any user and would hand them the setgid postdrop commands), each wiped before and after use.
SLOTS_ROOT = Path("/var/lib/newsletter-test-postfix")
SLOT_COUNT = 4
REGISTER_LOCK = SLOTS_ROOT / ".register.lock"
MAIL_USER = "nobody"  # the uid virtual(8) delivers as: not root, not Postfix's own mail_owner
DOMAINS = ("example.com", "example.org", "example.net", "newsletter.test")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


class PostfixUnavailable(RuntimeError):
    """Postfix cannot be started here (not installed, not root): the reason, and what to do."""


def unavailable_reason() -> str | None:
    """Why no private Postfix can run on this machine, or None if it can."""
    if not (os.access(POSTFIX, os.X_OK) and os.access(POSTCONF, os.X_OK)):
        return "Debian's postfix is not installed (apt-get install postfix; .ci/run does)"
    if os.geteuid() != 0:
        return "starting a Postfix instance needs root (its master runs as root and drops to the postfix user)"
    try:
        pwd.getpwnam("postfix")
        pwd.getpwnam(MAIL_USER)
    except KeyError as exc:
        return f"the system user {exc.args[0]} is missing (the postfix package creates 'postfix')"
    return None


def slot_config_dir(slot: int) -> Path:
    return SLOTS_ROOT / str(slot) / "etc"


def _root_only_dir(path: Path) -> None:
    """Create `path` (0755, root) or check that an existing one is root's and writable by nobody else."""
    path.mkdir(mode=0o755, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise PostfixUnavailable(f"{path} must be a directory owned by root and writable only by root")


def _config_dirs_line(current: str, wanted: list[str]) -> str:
    listed = current.replace(",", " ").split()
    return " ".join(listed + [d for d in wanted if d not in listed])


def register_slots() -> None:
    """Make the default main.cf list every slot in alternate_config_directories (idempotent, locked).

    Debian's package installed with "No configuration" has no /etc/postfix/main.cf; then one is written
    that holds only this setting (the default instance is never started). An existing main.cf is edited
    with `postconf -e`, keeping what it lists already.
    """
    _root_only_dir(SLOTS_ROOT)
    wanted = [str(slot_config_dir(n)) for n in range(SLOT_COUNT)]
    with open(REGISTER_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        main_cf = DEFAULT_CONFIG / "main.cf"
        if not main_cf.exists():
            main_cf.write_text(
                "# Written by newsletter's tests: lets `postfix -c` start private test instances.\n"
                "# The default instance is not configured (Debian's \"No configuration\").\n"
                f"alternate_config_directories = {' '.join(wanted)}\n",
                encoding="utf-8",
            )
            return
        current = subprocess.run([POSTCONF, "-h", "alternate_config_directories"], capture_output=True,
                                 text=True, check=True, timeout=30).stdout.strip()
        line = _config_dirs_line(current, wanted)
        if line != current:
            subprocess.run([POSTCONF, "-e", f"alternate_config_directories = {line}"], check=True,
                           capture_output=True, timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{listen} inet n - n - - smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
local      unix  - n n -     - local
virtual    unix  - n n -     - virtual
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


def _main_cf(base: Path, port: int, cert: Path, key: Path, size_limit: int) -> str:
    mail = pwd.getpwnam(MAIL_USER)
    return f"""\
# A private test instance: loopback only, nothing relayed, every accepted message into one Maildir.
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
maillog_file = {base}/log/maillog
myhostname = mx.newsletter.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP private test instance
alias_maps =
alias_database =
default_transport = error:this test instance delivers nowhere else
relay_transport = error:this test instance delivers nowhere else
virtual_mailbox_domains = {' '.join(DOMAINS)}
virtual_mailbox_base = {base}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{mail.pw_uid}
virtual_gid_maps = static:{mail.pw_gid}
virtual_minimum_uid = 1
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtputf8_enable = yes
message_size_limit = {size_limit}
"""


@dataclass(frozen=True)
class PostfixInstance:
    """A running private Postfix: where it listens, the CA that signed its certificate, its Maildir."""

    config_dir: Path
    port: int
    ca_path: Path
    maildir: Path
    maillog: Path
    size_limit: int

    def url(self, query: str = "") -> str:
        ca = f"cafile={self.ca_path}"
        return f"smtp://127.0.0.1:{self.port}?{ca}&{query}" if query else f"smtp://127.0.0.1:{self.port}?{ca}"

    def plain_url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=off"

    def delivered(self) -> list[Path]:
        new = self.maildir / "new"
        return sorted(new.iterdir()) if new.is_dir() else []

    def wait_delivered(self, count: int, *, timeout: float = 60.0) -> list[Path]:
        """The Maildir's messages once there are at least `count` (AssertionError with the log if not in time)."""
        deadline = time.monotonic() + timeout
        while True:
            files = self.delivered()
            if len(files) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if len(files) < count:
            raise AssertionError(f"{len(files)} of {count} messages delivered after {timeout:.0f} s; "
                                 f"Postfix log:\n{self.log_tail()}")
        return files

    def clear_maildir(self) -> None:
        for sub in ("new", "cur"):
            folder = self.maildir / sub
            if folder.is_dir():
                for path in folder.iterdir():
                    path.unlink()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.maillog.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log written)"


def _take_slot(stack: contextlib.ExitStack) -> int:
    for slot in range(SLOT_COUNT):
        lock = stack.enter_context(open(SLOTS_ROOT / f".{slot}.lock", "a"))
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        return slot
    raise PostfixUnavailable(f"all {SLOT_COUNT} private Postfix slots under {SLOTS_ROOT} are in use")


def _postfix(config_dir: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([POSTFIX, "-c", str(config_dir), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _master_pid(base: Path) -> int | None:
    try:
        return int((base / "queue" / "pid" / "master.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _stop(config_dir: Path, base: Path) -> None:
    """`postfix stop`, then the master by pid if it is still there (bounded either way)."""
    pid = _master_pid(base)
    with contextlib.suppress(subprocess.TimeoutExpired):
        _postfix(config_dir, "stop", timeout=STOP_TIMEOUT)
    if pid is None or _wait_gone(pid, STOP_TIMEOUT):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _wait_gone(pid, 5.0):
            return


def _wait_listening(instance: PostfixInstance, pid_base: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with socket.create_connection(("127.0.0.1", instance.port), timeout=2) as sock:
                if sock.recv(200).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise PostfixUnavailable(f"Postfix did not answer on port {instance.port} within {START_TIMEOUT:.0f} s;"
                                     f" log:\n{instance.log_tail()}")
        time.sleep(0.1)


@contextlib.contextmanager
def postfix_instance(*, size_limit: int = 10_240_000) -> Iterator[PostfixInstance]:
    """Start a private Postfix in a free slot (STARTTLS with a trustme certificate), stop and wipe it after."""
    reason = unavailable_reason()
    if reason:
        raise PostfixUnavailable(reason)
    register_slots()
    with contextlib.ExitStack() as stack:
        slot = _take_slot(stack)
        base = SLOTS_ROOT / str(slot)
        config_dir = slot_config_dir(slot)
        if (master := _master_pid(base)) is not None and _alive(master):
            _stop(config_dir, base)  # left over from a run that was killed
        shutil.rmtree(base, ignore_errors=True)
        for sub in ("", "etc", "queue", "data", "log", "tls"):
            (base / sub).mkdir(mode=0o755, exist_ok=True)
        postfix_user = pwd.getpwnam("postfix")
        os.chown(base / "data", postfix_user.pw_uid, postfix_user.pw_gid)  # data_directory: the mail owner's
        mail_user = pwd.getpwnam(MAIL_USER)
        (base / "mail").mkdir(mode=0o700)
        os.chown(base / "mail", mail_user.pw_uid, mail_user.pw_gid)

        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost", "mx.newsletter.test")
        cert, key, ca_path = base / "tls" / "cert.pem", base / "tls" / "key.pem", base / "tls" / "ca.pem"
        leaf.private_key_pem.write_to_path(str(key))
        os.chmod(key, 0o600)
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        ca.cert_pem.write_to_path(str(ca_path))

        port = free_port()
        (config_dir / "main.cf").write_text(_main_cf(base, port, cert, key, size_limit), encoding="utf-8")
        (config_dir / "master.cf").write_text(_MASTER_CF.format(listen=f"127.0.0.1:{port}"), encoding="utf-8")
        instance = PostfixInstance(config_dir=config_dir, port=port, ca_path=ca_path,
                                   maildir=base / "mail" / "inbox", maillog=base / "log" / "maillog",
                                   size_limit=size_limit)

        stack.callback(shutil.rmtree, base, True)
        stack.callback(_stop, config_dir, base)
        # `postfix check` creates the queue's subdirectories with their owners and modes.
        for step in (("check",), ("start",)):
            done = _postfix(config_dir, *step, timeout=START_TIMEOUT)
            if done.returncode != 0:
                raise PostfixUnavailable(f"postfix -c {config_dir} {' '.join(step)} failed: "
                                         f"{(done.stderr or done.stdout).strip()}\nlog:\n{instance.log_tail()}")
        _wait_listening(instance, base)
        yield instance
