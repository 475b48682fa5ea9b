"""Storage faults: a locked, read-only or full database, a full or read-only Maildir outbox.

Every fault must end in one clear line that names the path (no traceback), and the ledger must never
say 'sent' for a message that was not delivered: it is compared with the outbox (or the SMTP
server's record) after each fault, and a resume once the fault is gone must lose nobody.

The tests run as root, where chmod stops nothing. Read-only and full filesystems are made for real:
a tiny tmpfs (`mount -t tmpfs -o size=...`), a read-only remount, or the immutable attribute
(`chattr +i`). Without the privileges for those (CAP_SYS_ADMIN, CAP_LINUX_IMMUTABLE) those tests
skip; the lock tests need no privileges (another connection holds `BEGIN EXCLUSIVE`).
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_inprocess import run_newsletter
from faults import FaultInjectingHandler, copy_sample_project, fault_server, prepare_issue, write_subscribers_csv

from newsletter.store import sqlite as db, subscribers
from newsletter.jobs.delivery import personaliser_for, send_full
from newsletter.transports import transport_factory
from newsletter.errors import LedgerError
from newsletter.send import SendPolicy, send_issue
from newsletter.settings import Settings, load_settings

SECRET = "storage-faults-secret-for-tests-only"
ISSUE = "2026-11-25"
#: How long a writer waits for another's lock in these projects: short, as only the outcome is under test.
BUSY_TIMEOUT = 0.5


# --- helpers --------------------------------------------------------------------------------------

def run_cli(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m newsletter ARGS` in `project`, run in this process: the faults here are in the storage, and the
    lock holder is a separate process of its own (`exclusive_lock`), so the command's process boundary is not
    the point."""
    full_env = {**os.environ, "NEWSLETTER_SECRET": SECRET, **(env or {})}
    full_env.pop("NEWSLETTER_CONFIG", None)
    return run_newsletter(args, cwd=project, env=full_env)


def _privileged(*command: str) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip(f"`{command[0]}` is not installed")
    if result.returncode != 0:
        pytest.skip(f"`{' '.join(command)}` is not permitted here ({result.stderr.strip()}); needs root privileges")


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real filesystem of `size` bytes mounted at `path` (skips without the privilege to mount)."""
    path.mkdir(parents=True, exist_ok=True)
    _privileged("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


@contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """`chattr +i`: not even root may write, create or delete (skips where the flag is not allowed)."""
    _privileged("chattr", "+i", str(path))
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def cli_project(root: Path, subscribers: int | None = None) -> Path:
    """A sample project with the 2026-11-25 issue built and approved, subscribers imported."""
    copy_sample_project(root)
    with (root / "newsletter.toml").open("a", encoding="utf-8") as config:
        config.write(f"busy_timeout = {BUSY_TIMEOUT}\n")
    settings = load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": SECRET})
    csv = None
    if subscribers is not None:
        csv = root / "people.csv"
        write_subscribers_csv(csv, subscribers)
    prepare_issue(settings, subscribers_csv=csv)
    return root


def ledger(project: Path) -> list[tuple[int, str, str | None]]:
    """(subscriber id, status, Message-ID) for every ledger row."""
    conn = sqlite3.connect(project / "var" / "newsletter.sqlite3")
    try:
        return conn.execute("SELECT subscriber_id, status, message_id FROM ledger ORDER BY subscriber_id").fetchall()
    finally:
        conn.close()


def outbox_message_ids(maildir: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for path in (maildir / "new").iterdir():
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        ids[str(msg["Message-ID"]).strip("<>")] += 1
    return ids


def assert_one_clean_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no error message"
    return "\n".join(lines)


# --- the database ----------------------------------------------------------------------------------

@contextmanager
def exclusive_lock(database: Path, *, seconds: float = 30.0) -> Iterator[subprocess.Popen[str]]:
    """Another process holding `BEGIN EXCLUSIVE` on the database (a backup tool, a forgotten sqlite3 shell)."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(float(sys.argv[2]))",
         str(database), str(seconds)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture(scope="module")
def locked_send(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    project = cli_project(tmp_path_factory.mktemp("locked-send") / "site")
    with exclusive_lock(project / "var" / "newsletter.sqlite3"):
        return project, run_cli(project, "send", ISSUE)


@pytest.fixture(scope="module")
def read_only_send(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    project = cli_project(tmp_path_factory.mktemp("read-only-send") / "site")
    with immutable(project / "var" / "newsletter.sqlite3"):
        return project, run_cli(project, "send", ISSUE)


def test_database_locked_by_another_process_sends_nothing(
        locked_send: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    project, result = locked_send
    message = assert_one_clean_line(result)
    assert result.returncode == 1 and "locked" in message
    assert not (project / "outbox").exists()
    assert ledger(project) == []


def test_read_only_database_file_sends_nothing(read_only_send: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    project, result = read_only_send
    message = assert_one_clean_line(result)
    assert result.returncode == 1 and "readonly" in message.replace("read-only", "readonly")
    assert not (project / "outbox").exists()
    assert ledger(project) == []


@pytest.mark.parametrize("fault", ["locked_send", "read_only_send"])
def test_a_database_error_during_send_names_the_database_file(request: pytest.FixtureRequest, fault: str) -> None:
    project, result = request.getfixturevalue(fault)
    message = assert_one_clean_line(result)
    assert str(project / "var" / "newsletter.sqlite3") in message, message


def test_read_only_database_folder_names_the_file(tmp_path: Path) -> None:
    project = cli_project(tmp_path / "site")
    var = project / "var"
    for leftover in var.glob("newsletter.sqlite3-*"):
        leftover.unlink()  # a cleanly closed database: only the main file
    _privileged("mount", "--bind", str(var), str(var))
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(var)], check=True)
        result = run_cli(project, "send", ISSUE)
    finally:
        subprocess.run(["umount", "-l", str(var)], check=False)
    message = assert_one_clean_line(result)
    assert result.returncode == 1 and str(var / "newsletter.sqlite3") in message
    assert not (project / "outbox").exists()


@dataclass(frozen=True)
class MidSendFault:
    """What happened when the database became unwritable in the middle of a send."""

    error: BaseException | None
    sent_rows: dict[int, str]  # subscriber id -> Message-ID, for rows marked 'sent'
    claimed_after: int
    accepted_during: Counter[str]
    accepted_total: Counter[str]
    expected_ids: frozenset[str]
    resumed_sent: int


def _settings(root: Path) -> Settings:
    return load_settings(root / "newsletter.toml", env={"NEWSLETTER_SECRET": SECRET})


def _sent_rows(database: Path) -> tuple[dict[int, str], int]:
    conn = sqlite3.connect(database)
    try:
        rows = dict(conn.execute("SELECT subscriber_id, message_id FROM ledger WHERE status = 'sent'").fetchall())
        claimed = conn.execute("SELECT COUNT(*) FROM ledger WHERE status = 'claimed'").fetchone()[0]
        return rows, int(claimed)
    finally:
        conn.close()


def _expected_ids(settings: Settings, folder: Path) -> frozenset[str]:
    conn = db.connect(settings.path(settings.database))
    personaliser = personaliser_for(settings, folder)
    try:
        return frozenset(personaliser.message(s).message_id for s in subscribers.iter_subscribed(conn))
    finally:
        conn.close()


def _unwritable_mid_send(root: Path, make_unwritable: Callable[[Settings], AbstractContextManager[object]],
                         *, after: int = 4) -> MidSendFault:
    """Send 40 messages over 2 connections; after `after` results the database becomes unwritable.

    `make_unwritable(settings)` is entered on the sending thread right after a commit (so the fault,
    not our own open transaction, is what blocks the next write) and held until the send has given
    up. The server is slow (0.1 s a message), so the second connection always has a message in
    flight when the first write fails.
    """
    settings = _settings(root)
    folder = root / "issues" / ISSUE
    handler = FaultInjectingHandler(delay=0.1)
    error: BaseException | None = None
    with fault_server(handler) as server:
        smtp = dataclasses.replace(settings, transport=server.url(query="starttls=off&timeout=5"))
        conn = db.connect(settings.path(settings.database), timeout=settings.busy_timeout)
        results = 0
        with ExitStack() as held:

            def progress(_kind: str, _subscriber: object) -> None:
                nonlocal results
                results += 1
                if results == after:
                    conn.commit()
                    held.enter_context(make_unwritable(settings))

            try:
                send_issue(conn, ISSUE, make_message=personaliser_for(smtp, folder).message,
                           transport_factory=transport_factory(smtp), policy=SendPolicy(connections=2),
                           progress=progress)
            except Exception as exc:  # what escapes is the point of the test
                error = exc
            finally:
                conn.close()
        sent_rows, claimed = _sent_rows(settings.path(settings.database))
        during = handler.accepted_ids()
        handler.delay = 0.0
        resumed = send_full(smtp, folder)
        total = handler.accepted_ids()
    return MidSendFault(error=error, sent_rows=sent_rows, claimed_after=claimed, accepted_during=during,
                        accepted_total=total, expected_ids=_expected_ids(settings, folder),
                        resumed_sent=resumed.sent)


@pytest.fixture(scope="module")
def locked_mid_send(tmp_path_factory: pytest.TempPathFactory) -> MidSendFault:
    root = cli_project(tmp_path_factory.mktemp("locked") / "site", subscribers=40)
    return _unwritable_mid_send(root, lambda s: exclusive_lock(s.path(s.database)))


def _assert_nothing_false_and_nobody_lost(fault: MidSendFault) -> None:
    summary = (f"error={fault.error!r} sent={len(fault.sent_rows)} claimed={fault.claimed_after} "
               f"accepted={len(fault.accepted_during)} resumed={fault.resumed_sent}")
    assert fault.error is not None, summary
    # Nothing is marked sent that the server did not accept...
    assert set(fault.sent_rows.values()) <= set(fault.accepted_during), summary
    # ...messages accepted but not recorded are still claimed, so the resume sends them again...
    assert len(fault.accepted_during) - len(fault.sent_rows) <= fault.claimed_after, summary
    # ...and nobody is lost: every subscriber's Message-ID was accepted, duplicates bounded by the claims.
    assert set(fault.accepted_total) == fault.expected_ids, summary
    duplicates = sum(n - 1 for n in fault.accepted_total.values())
    assert duplicates <= fault.claimed_after, f"{duplicates} duplicates; {summary}"


def test_lock_taken_mid_send_marks_only_what_was_delivered(locked_mid_send: MidSendFault) -> None:
    _assert_nothing_false_and_nobody_lost(locked_mid_send)
    assert "locked" in str(locked_mid_send.error)


def test_lock_taken_mid_send_is_a_ledger_error(locked_mid_send: MidSendFault) -> None:
    assert isinstance(locked_mid_send.error, LedgerError), repr(locked_mid_send.error)


@contextmanager
def _disk_filled(folder: Path) -> Iterator[None]:
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for block in (1 << 16, 512):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError:
                pass
    finally:
        os.close(fd)
    try:
        yield
    finally:
        filler.unlink()


def test_database_disk_full_mid_send_marks_only_what_was_delivered(tmp_path: Path) -> None:
    root = tmp_path / "site"
    with tmpfs(root / "var", "8m"):
        cli_project(root, subscribers=40)
        fault = _unwritable_mid_send(root, lambda s: _disk_filled(s.path(s.database).parent))
    _assert_nothing_false_and_nobody_lost(fault)
    assert "disk is full" in str(fault.error), repr(fault.error)


# --- the Maildir outbox -----------------------------------------------------------------------------

def test_full_outbox_stops_naming_the_folder_and_resumes_without_loss(tmp_path: Path) -> None:
    project = cli_project(tmp_path / "site")
    outbox = project / "outbox"
    with tmpfs(outbox, "64k"):
        result = run_cli(project, "send", ISSUE)
        message = assert_one_clean_line(result)
        assert result.returncode == 3
        assert f"cannot write to Maildir {outbox}: No space left on device" in message
        delivered = outbox_message_ids(outbox)
        rows = ledger(project)
        assert 0 < len(delivered) < 8 and list((outbox / "tmp").iterdir()) == []
        # The ledger says 'sent' for exactly the messages that are in the outbox, and nothing is left claimed.
        assert {mid for _, status, mid in rows if status == "sent"} == set(delivered)
        assert all(status == "sent" for _, status, _ in rows)
        subprocess.run(["mount", "-o", "remount,size=4m", str(outbox)], check=True)
        resumed = run_cli(project, "send", ISSUE)
        assert resumed.returncode == 0, resumed.stderr
        final = outbox_message_ids(outbox)
    assert len(final) == 8 and set(final.values()) == {1}
    assert {mid for _, status, mid in ledger(project) if status == "sent"} == set(final)


def test_read_only_outbox_stops_naming_the_folder(tmp_path: Path) -> None:
    project = cli_project(tmp_path / "site")
    outbox = project / "outbox"
    with tmpfs(outbox, "1m"):
        for sub in ("tmp", "new", "cur"):
            (outbox / sub).mkdir()
        remount_read_only(outbox)
        result = run_cli(project, "send", ISSUE)
        message = assert_one_clean_line(result)
        assert result.returncode == 3
        assert f"cannot write to Maildir {outbox}: Read-only file system" in message
        assert not any((outbox / "new").iterdir())
    assert ledger(project) == []


def test_immutable_outbox_stops_naming_the_folder(tmp_path: Path) -> None:
    project = cli_project(tmp_path / "site")
    outbox = project / "outbox"
    outbox.mkdir()
    with immutable(outbox):
        result = run_cli(project, "send", ISSUE)
    message = assert_one_clean_line(result)
    assert result.returncode == 3 and f"cannot write to Maildir {outbox}" in message
    assert ledger(project) == []


def test_outbox_under_a_file_stops_naming_the_folder(tmp_path: Path) -> None:
    # Needs no privileges: a path whose parent is a file can never be created.
    project = cli_project(tmp_path / "site")
    (project / "blocker").write_text("not a folder\n")
    result = run_cli(project, "send", ISSUE, env={"NEWSLETTER_TRANSPORT": "maildir:blocker/outbox"})
    message = assert_one_clean_line(result)
    assert result.returncode == 3 and f"cannot write to Maildir {project / 'blocker' / 'outbox'}" in message
    assert ledger(project) == []


# --- the send and other writers --------------------------------------------------------------------

def test_an_unsubscribe_during_a_slow_send_is_not_locked_out(tmp_path: Path) -> None:
    root = cli_project(tmp_path / "site", subscribers=10)
    settings = _settings(root)
    # A server that stalls on one message for longer than a writer waits for a lock (the busy timeout).
    handler = FaultInjectingHandler(slow={"^r0003@": settings.busy_timeout + 1.5})
    outcome: dict[str, object] = {}

    def unsubscribe_while_the_server_stalls() -> None:
        while handler.rcpt_attempts["r0003@example.org"] == 0:
            time.sleep(0.005)
        time.sleep(0.2)
        conn = db.connect(settings.path(settings.database), timeout=settings.busy_timeout)  # as `serve` does
        started = time.monotonic()
        try:
            found = subscribers.find(conn, "r0009@example.org")
            assert found is not None
            subscribers.unsubscribe(conn, found.id)
            outcome["ok"] = time.monotonic() - started
        except sqlite3.Error as exc:
            outcome["error"] = exc
        finally:
            conn.close()

    with fault_server(handler) as server:
        helper = threading.Thread(target=unsubscribe_while_the_server_stalls)
        helper.start()
        report = send_full(dataclasses.replace(settings, transport=server.url(query="starttls=off")),
                           root / "issues" / ISSUE)
        helper.join()
    # The unsubscribe lands, and takes effect for the message already claimed (issue 14, "Also").
    assert report.sent == 9 and "r0009@example.org" not in handler.recipients()
    assert "error" not in outcome, outcome["error"]


def test_subscribers_remove_on_a_locked_database_is_one_clear_line(tmp_path: Path) -> None:
    project = cli_project(tmp_path / "site")
    with exclusive_lock(project / "var" / "newsletter.sqlite3"):
        result = run_cli(project, "subscribers", "remove", "li.wei@example.org")
    assert result.returncode == 1
    message = assert_one_clean_line(result)
    assert "locked" in message
