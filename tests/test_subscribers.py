"""Subscribers on both stores (a real SQLite file, a real PostgreSQL database): validation, case-insensitive
uniqueness, CSV import by line, streaming."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.errors import SubscriberError
from newsletter.store import Connection, subscribers
from store_support import Counting, conn, pg_database, pg_template, store  # noqa: F401 - fixtures: each test runs on SQLite and on PostgreSQL


def write(path: Path, text: str, *, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# -- addresses and names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Jane@Example.COM", "Jane@example.com"),
        ("  jane@example.com \n", "jane@example.com"),
        ("user@BÜCHER.de", "user@bücher.de"),
        ("user@xn--bcher-kva.de", "user@bücher.de"),
        ("用户@例子.广告", "用户@例子.广告"),
    ],
)
def test_normalise_address(raw: str, normalised: str) -> None:
    assert subscribers.normalise_address(raw) == normalised


@pytest.mark.parametrize(
    "raw", ["", "no-at-sign", "a@b", "two@@example.com", "a b@example.com", "x@example.com\nBcc: y"]
)
def test_invalid_addresses_raise_with_the_reason(raw: str) -> None:
    with pytest.raises(SubscriberError) as info:
        subscribers.normalise_address(raw)
    assert info.value.address == raw
    assert "not a valid email address" in str(info.value)


def test_names_are_cleaned() -> None:
    assert subscribers.clean_name(" Jane\r\nBcc: x@y.z\x00 \t Doe ") == "Jane Bcc: x@y.z Doe"
    assert subscribers.clean_name("a\u2028b\u202ec") == "a bc"
    assert len(subscribers.clean_name("x" * 500)) == 200


# -- add / remove / status ---------------------------------------------------------------------


def test_add_is_unique_case_insensitively(conn: Connection) -> None:
    first = subscribers.add(conn, "Jane@Example.com", "Jane")
    again = subscribers.add(conn, "JANE@example.COM")
    assert again.id == first.id
    assert again.email == "Jane@example.com" and again.name == "Jane"
    renamed = subscribers.add(conn, "jane@example.com", "Jane Doe")
    assert renamed.id == first.id and renamed.name == "Jane Doe"
    assert subscribers.count(conn) == 1
    row = conn.execute("SELECT email_key, created_at FROM subscribers").fetchone()
    assert row["email_key"] == "jane@example.com"
    assert row["created_at"].endswith("+00:00")


def test_remove_then_add_does_not_resubscribe(conn: Connection) -> None:
    sub = subscribers.add(conn, "jane@example.com", "Jane")
    removed = subscribers.remove(conn, "JANE@example.com")
    assert removed.status == "unsubscribed"
    stamp = conn.execute("SELECT unsubscribed_at FROM subscribers WHERE id = ?", (sub.id,)).fetchone()[0]
    assert stamp and stamp.endswith("+00:00")
    assert subscribers.add(conn, "jane@example.com", "Other").status == "unsubscribed"
    assert subscribers.get(conn, sub.id).name == "Jane"  # type: ignore[union-attr]
    back = subscribers.add(conn, "jane@example.com", resubscribe=True)
    assert back.status == "subscribed" and back.id == sub.id


def test_remove_unknown_address(conn: Connection) -> None:
    with pytest.raises(SubscriberError, match="not on the list"):
        subscribers.remove(conn, "ghost@example.com")


def test_bounced_and_unsubscribed(conn: Connection) -> None:
    a = subscribers.add(conn, "a@example.com")
    b = subscribers.add(conn, "b@example.com")
    subscribers.add(conn, "c@example.com")
    assert subscribers.mark_bounced(conn, a.id).status == "bounced"
    assert subscribers.unsubscribe(conn, b.id).status == "unsubscribed"
    # A bounce never overrides an explicit unsubscribe.
    assert subscribers.mark_bounced(conn, b.id).status == "unsubscribed"
    assert subscribers.add(conn, "a@example.com").status == "bounced"
    assert subscribers.count(conn, "subscribed") == 1
    assert [s.email for s in subscribers.list_subscribers(conn, status="bounced")] == ["a@example.com"]
    assert len(subscribers.list_subscribers(conn)) == 3
    assert subscribers.get(conn, 999) is None
    with pytest.raises(SubscriberError):
        subscribers.unsubscribe(conn, 999)
    with pytest.raises(SubscriberError, match="unknown subscriber status"):
        subscribers.count(conn, "gone")


def test_iter_subscribed_streams_in_pages(conn: Connection) -> None:
    for i in range(7):
        subscribers.add(conn, f"user{i}@example.com")
    subscribers.unsubscribe(conn, 3)
    counting = Counting(conn, "LIMIT")
    seen = [s.id for s in subscribers.iter_subscribed(counting, batch=2)]
    assert seen == [1, 2, 4, 5, 6, 7]
    assert counting.count == 4  # three full pages, then an empty one


# -- CSV import --------------------------------------------------------------------------------


def test_import_reports_bad_rows_by_editor_line(conn: Connection, tmp_path: Path) -> None:
    csv_file = write(
        tmp_path / "list.csv",
        "\ufeffName,Ignored,EMAIL\r\n"  # BOM, header in any case, extra column, email not first
        "Ann,x,ann@example.com\r\n"  # line 2
        "Bob,x,not-an-address\r\n"  # line 3
        '"Multi\nLine Name",x,multi@example.com\r\n'  # lines 4-5
        "Cy,x,\r\n"  # line 6
        "\r\n"  # line 7, blank
        "Ann again,x,ANN@example.com\r\n"  # line 8, duplicate of line 2
        "Dee,x,dee@bücher.de\r\n"  # line 9
        "Eve,x,eve@localhost\r\n",  # line 10
    )
    report = subscribers.import_csv(conn, csv_file)
    assert (report.added, report.updated, report.unchanged, report.skipped) == (3, 0, 0, 0)
    assert [(e.line, e.email) for e in report.errors] == [
        (3, "not-an-address"),
        (6, ""),
        (8, "ANN@example.com"),
        (10, "eve@localhost"),
    ]
    assert "duplicate of line 2" in report.errors[2].reason
    assert "@-sign" in report.errors[0].reason
    assert not report.ok
    names = {s.email: s.name for s in subscribers.list_subscribers(conn)}
    assert names == {"ann@example.com": "Ann", "multi@example.com": "Multi Line Name", "dee@bücher.de": "Dee"}


def test_reimport_never_resubscribes(conn: Connection, tmp_path: Path) -> None:
    csv_file = write(tmp_path / "list.csv", "email,name\na@example.com,A\nb@example.com,B\nc@example.com,C\n")
    assert subscribers.import_csv(conn, csv_file).added == 3
    subscribers.remove(conn, "b@example.com")
    subscribers.mark_bounced(conn, subscribers.find(conn, "c@example.com").id)  # type: ignore[union-attr]
    write(tmp_path / "list.csv", "email,name\nA@example.com,A2\nb@example.com,B\nc@example.com,C\nd@example.com,\n")
    report = subscribers.import_csv(conn, csv_file)
    assert (report.added, report.updated, report.unchanged, report.skipped) == (1, 1, 0, 2)
    assert report.skipped_rows == (
        subscribers.RowProblem(3, "b@example.com", "skipped: unsubscribed"),
        subscribers.RowProblem(4, "c@example.com", "skipped: bounced"),
    )
    statuses = {s.email: (s.status, s.name) for s in subscribers.list_subscribers(conn)}
    assert statuses == {
        "a@example.com": ("subscribed", "A2"),
        "b@example.com": ("unsubscribed", "B"),
        "c@example.com": ("bounced", "C"),
        "d@example.com": ("subscribed", ""),
    }
    # Importing the same file again changes nothing; an empty name never erases a known one.
    again = subscribers.import_csv(conn, csv_file)
    assert (again.added, again.updated, again.unchanged, again.skipped) == (0, 0, 2, 2)


def test_import_without_name_column(conn: Connection, tmp_path: Path) -> None:
    report = subscribers.import_csv(conn, write(tmp_path / "l.csv", "E-Mail Ignored,email\nx,z@example.com\n"))
    assert report.added == 1 and subscribers.find(conn, "z@example.com").name == ""  # type: ignore[union-attr]


def test_non_utf8_file_is_refused_naming_the_file(conn: Connection, tmp_path: Path) -> None:
    csv_file = write(tmp_path / "latin1.csv", "email,name\nj@example.com,Jürgen\n", encoding="latin-1")
    with pytest.raises(SubscriberError) as info:
        subscribers.import_csv(conn, csv_file)
    assert "latin1.csv" in str(info.value) and "line 2" in str(info.value) and "UTF-8" in str(info.value)
    assert subscribers.count(conn) == 0


@pytest.mark.parametrize("text", ["", "\n\n", "name,address\nA,a@example.com\n"])
def test_file_without_email_header_is_refused(conn: Connection, tmp_path: Path, text: str) -> None:
    with pytest.raises(SubscriberError, match="email"):
        subscribers.import_csv(conn, write(tmp_path / "l.csv", text))


def test_import_100k_rows(conn: Connection, tmp_path: Path) -> None:
    # How fast is a benchmark (python -m benchmarks --only scale), not a timed test: CI machines are shared.
    csv_file = tmp_path / "big.csv"
    with csv_file.open("w", encoding="utf-8") as out:
        out.write("email,name\n")
        out.writelines(f"reader{i}@example.org,Reader {i}\n" for i in range(100_000))
    report = subscribers.import_csv(conn, csv_file)
    assert report.added == 100_000 and report.ok
    assert subscribers.count(conn, "subscribed") == 100_000


def test_duplicates_far_apart_are_found_by_the_database(conn: Connection, tmp_path: Path) -> None:
    # The import streams in batches and keeps no set of addresses in memory: a duplicate thousands of rows
    # (several insert batches) after its first line must still be caught, reported as written, and not imported.
    csv_file = tmp_path / "far.csv"
    with csv_file.open("w", encoding="utf-8") as out:
        out.write("email,name\n")
        out.writelines(f"reader{i}@example.org,Reader {i}\n" for i in range(12_000))
        out.write("READER0@Example.org,Someone else\n")  # line 12,002: duplicate of line 2
    report = subscribers.import_csv(conn, csv_file)
    assert report.added == 12_000
    assert [(p.line, p.email, p.reason) for p in report.errors] == [
        (12_002, "READER0@Example.org", "duplicate of line 2")
    ]
    assert subscribers.find(conn, "reader0@example.org").name == "Reader 0"


def test_import_of_a_bad_byte_leaves_the_list_untouched(conn: Connection, tmp_path: Path) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_bytes(b"email\n" + b"".join(b"r%d@example.org\n" % i for i in range(7_000)) + b"caf\xe9@example.org\n")
    with pytest.raises(SubscriberError, match=r"line 7002: not UTF-8 \(byte 0xe9\)"):
        subscribers.import_csv(conn, csv_file)
    assert subscribers.count(conn) == 0
