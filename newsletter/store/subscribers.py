"""The subscriber list: validated, case-insensitively unique addresses, CSV import, streaming reads."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import ComplainedError, SubscriberError
from newsletter.store.events import has_complained
from newsletter.store.dbapi import Connection, Row, dialect, transaction, utc_now
from newsletter.headers import strip_controls
from newsletter.models import Subscriber

__all__ = [
    "STATUSES",
    "MAX_NAME_LENGTH",
    "normalise_address",
    "email_key",
    "clean_name",
    "add",
    "remove",
    "unsubscribe",
    "mark_bounced",
    "get",
    "status_of",
    "unsubscribed_at",
    "find",
    "list_subscribers",
    "iter_subscribed",
    "count",
    "RowProblem",
    "ImportReport",
    "import_csv",
]

STATUSES = ("subscribed", "unsubscribed", "bounced")
MAX_NAME_LENGTH = 200
_COLUMNS = "id, email, name, status, first_name"
#: Header spellings of the first-name column (what the greeting uses); the `name` column never is.
FIRST_NAME_HEADERS = ("first_name", "first name", "firstname", "given name")
_INSERT_BATCH = 5000


def normalise_address(raw: str) -> str:
    """The address as email-validator normalises it (IDN domain normalised, no DNS lookups)."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise SubscriberError(f"{raw!r} is not a valid email address: {exc}", address=raw) from exc
    if "=?" in result.local_part:
        # Valid by RFC 5321, but a mail reader may decode it as an RFC 2047 word (newlines and all).
        raise SubscriberError(f"{raw!r} looks like an encoded header word (=?...?=); refused", address=raw)
    return str(result.normalized)


def email_key(address: str) -> str:
    """The uniqueness key for an already-normalised address."""
    return address.lower()


def clean_name(raw: str) -> str:
    """A display name without control characters or line breaks, whitespace collapsed, at most 200 chars."""
    return " ".join(strip_controls(raw).split())[:MAX_NAME_LENGTH].rstrip()


def _row(row: Row) -> Subscriber:
    return Subscriber(id=row["id"], email=row["email"], name=row["name"], status=row["status"],
                      first_name=row["first_name"])


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise SubscriberError(f"unknown subscriber status {status!r} (expected one of {', '.join(STATUSES)})")


def get(conn: Connection, subscriber_id: int) -> Subscriber | None:
    """The subscriber with this id, or None."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM subscribers WHERE id = ?", (subscriber_id,)).fetchone()
    return _row(row) if row else None


def status_of(conn: Connection, subscriber_id: int) -> str | None:
    """The subscriber's status now (None: no such id): what the send loop asks before each message."""
    row = conn.execute("SELECT status FROM subscribers WHERE id = ?", (subscriber_id,)).fetchone()
    return str(row[0]) if row else None


def unsubscribed_at(conn: Connection, subscriber_id: int) -> str | None:
    """When the subscriber first unsubscribed (ISO-8601 as stored), or None."""
    row = conn.execute("SELECT unsubscribed_at FROM subscribers WHERE id = ?", (subscriber_id,)).fetchone()
    return row[0] if row and row[0] else None


def find(conn: Connection, email: str) -> Subscriber | None:
    """The subscriber with this address (any case), or None; SubscriberError if it is not an address."""
    key = email_key(normalise_address(email))
    row = conn.execute(f"SELECT {_COLUMNS} FROM subscribers WHERE email_key = ?", (key,)).fetchone()
    return _row(row) if row else None


def add(conn: Connection, email: str, name: str = "", *, first_name: str = "",
        resubscribe: bool = False) -> Subscriber:
    """Add (or update the names of) a subscriber; an unsubscribed/bounced one stays so unless `resubscribe`."""
    address = normalise_address(email)
    key, name, first, now = email_key(address), clean_name(name), clean_name(first_name), utc_now()
    with transaction(conn):
        row = conn.execute(f"SELECT {_COLUMNS} FROM subscribers WHERE email_key = ?", (key,)).fetchone()
        if row is None:
            new_id = conn.execute(
                "INSERT INTO subscribers (email, email_key, name, first_name, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'subscribed', ?, ?) RETURNING id",
                (address, key, name, first, now, now),
            ).fetchall()[0][0]
            return Subscriber(id=int(new_id), email=address, name=name, first_name=first)
        current = _row(row)
        if current.status != "subscribed" and not resubscribe:
            return current
        if current.status != "subscribed" and has_complained(conn, current.id):
            raise ComplainedError(f"{current.email} reported our email as spam; it is not resubscribed",
                                  address=current.email)
        new_name, new_first = name or current.name, first or current.first_name
        if current.status == "subscribed" and (new_name, new_first) == (current.name, current.first_name):
            return current
        conn.execute(
            "UPDATE subscribers SET name = ?, first_name = ?, status = 'subscribed', updated_at = ? WHERE id = ?",
            (new_name, new_first, now, current.id),
        )
        return Subscriber(id=current.id, email=current.email, name=new_name, first_name=new_first)


def _set_status(conn: Connection, subscriber_id: int, status: str, *, commit: bool) -> Subscriber:
    now = utc_now()
    stamp = "unsubscribed_at" if status == "unsubscribed" else "bounced_at"
    # Only a subscribed (or, for an unsubscribe, a bounced) row changes status; timestamps keep the first time.
    allowed = ("subscribed", "bounced") if status == "unsubscribed" else ("subscribed",)
    cursor = conn.execute(
        f"UPDATE subscribers SET status = ?, {stamp} = ?, updated_at = ?"
        f" WHERE id = ? AND status IN ({', '.join('?' * len(allowed))})",
        (status, now, now, subscriber_id, *allowed),
    )
    if cursor.rowcount == 0 and status == "bounced":
        conn.execute("UPDATE subscribers SET bounced_at = COALESCE(bounced_at, ?) WHERE id = ?", (now, subscriber_id))
    row = conn.execute(f"SELECT {_COLUMNS} FROM subscribers WHERE id = ?", (subscriber_id,)).fetchone()
    if commit:
        conn.commit()
    if row is None:
        raise SubscriberError(f"no subscriber with id {subscriber_id}")
    return _row(row)


def unsubscribe(conn: Connection, subscriber_id: int, *, commit: bool = True) -> Subscriber:
    """Mark a subscriber unsubscribed (idempotent); SubscriberError for an unknown id."""
    return _set_status(conn, subscriber_id, "unsubscribed", commit=commit)


def mark_bounced(conn: Connection, subscriber_id: int, *, commit: bool = True) -> Subscriber:
    """Mark a subscribed subscriber bounced (an unsubscribed one stays unsubscribed, with bounced_at set)."""
    return _set_status(conn, subscriber_id, "bounced", commit=commit)


def remove(conn: Connection, email: str) -> Subscriber:
    """Unsubscribe by address (rows are kept, so a re-import cannot resubscribe them)."""
    found = find(conn, email)
    if found is None:
        raise SubscriberError(f"{email} is not on the list", address=email)
    return unsubscribe(conn, found.id)


def list_subscribers(conn: Connection, *, status: str | None = None) -> list[Subscriber]:
    """Every subscriber (optionally of one status), by id. For sending, use iter_subscribed."""
    _check_status(status)
    if status is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM subscribers ORDER BY id")
    else:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM subscribers WHERE status = ? ORDER BY id", (status,))
    return [_row(row) for row in rows]


def iter_subscribed(conn: Connection, *, batch: int = 1000) -> Iterator[Subscriber]:
    """Subscribed subscribers by id, fetched `batch` at a time (keyset pages: safe to write in between)."""
    last = 0
    while True:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM subscribers WHERE status = 'subscribed' AND id > ? ORDER BY id LIMIT ?",
            (last, batch),
        ).fetchall()
        for row in rows:
            yield _row(row)
        if len(rows) < batch:
            return
        last = rows[-1]["id"]


def count(conn: Connection, status: str | None = None) -> int:
    """How many subscribers (of one status, or in all)."""
    _check_status(status)
    if status is None:
        return int(conn.execute("SELECT COUNT(*) FROM subscribers").fetchone()[0])
    return int(conn.execute("SELECT COUNT(*) FROM subscribers WHERE status = ?", (status,)).fetchone()[0])


class RowProblem(NamedTuple):
    """A CSV row that was not imported: line as an editor numbers it (header = 1), the raw address, why."""

    line: int
    email: str
    reason: str


@dataclass(frozen=True)
class ImportReport:
    """What import_csv did: counts, plus the rows it skipped or rejected."""

    added: int = 0
    updated: int = 0  # existing subscribers whose name changed
    unchanged: int = 0
    skipped: int = 0  # unsubscribed/bounced addresses, never resubscribed by an import
    errors: tuple[RowProblem, ...] = ()
    skipped_rows: tuple[RowProblem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def _lines(path: Path) -> Iterator[str]:
    """The file's lines decoded one at a time (never the whole file in memory); a bad byte names its line."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SubscriberError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with handle:
        for number, data in enumerate(handle, start=1):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SubscriberError(
                    f"{path}: line {number}: not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8 CSV",
                    line=number,
                ) from exc
            yield text.removeprefix("\ufeff") if number == 1 else text


def _delimiter(header: str) -> str:
    """`,` or what the header line uses instead: `;` (Excel in much of Europe) or a tab."""
    for candidate in (",", ";", "\t"):
        if "email" in (cell.strip().strip('"').strip().lower() for cell in header.split(candidate)):
            return candidate
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def _parse_rows(path: Path, errors: list[RowProblem]) -> Iterator[tuple[int, str, str, str, str, str]]:
    """Rows as (line, address, key, name, first name, address as written), streamed; bad ones go to `errors`.

    Duplicates are not caught here (that would keep every address in memory): the database finds them.
    """
    header_line = next((line for line in _lines(path) if line.strip()), "")
    reader = csv.reader(_lines(path), delimiter=_delimiter(header_line))
    email_col = name_col = first_col = -1
    line_before = 0
    try:
        for record in reader:
            line, line_before = line_before + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if email_col < 0:
                header = [cell.strip().lower() for cell in record]
                if "email" not in header:
                    raise SubscriberError(f"{path}: line {line}: no 'email' column in the header {record!r}; the "
                                          "first line must name the columns, e.g. email,name,first_name", line=line)
                email_col = header.index("email")
                name_col = header.index("name") if "name" in header else -1
                first_col = next((header.index(h) for h in FIRST_NAME_HEADERS if h in header), -1)
                continue
            raw = record[email_col].strip() if email_col < len(record) else ""
            if not raw:
                errors.append(RowProblem(line, raw, "no email address"))
                continue
            try:
                address = normalise_address(raw)
            except SubscriberError as exc:
                errors.append(RowProblem(line, raw, str(exc.__cause__ or exc)))
                continue
            name = clean_name(record[name_col]) if 0 <= name_col < len(record) else ""
            first = clean_name(record[first_col]) if 0 <= first_col < len(record) else ""
            yield (line, address, email_key(address), name, first, raw)
    except csv.Error as exc:
        raise SubscriberError(f"{path}: line {reader.line_num}: {exc}", line=reader.line_num) from exc
    if email_col < 0:
        raise SubscriberError(f"{path}: empty file (expected a header with an 'email' column)")


_IMPORT_COLUMNS = ("line", "email", "email_key", "name", "first_name", "raw")


def _load(conn: Connection, path: Path, errors: list[RowProblem]) -> int:
    """Stream the file into the temporary table import_rows, keeping each address's first line; returns the
    rows kept.

    Only the connection's own temporary table is written here, so no lock on the list is held while a large
    file is parsed (a send running meanwhile keeps committing its results).
    """
    key_type = 'TEXT COLLATE "C"' if dialect(conn) == "postgresql" else "TEXT"
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS import_rows"
        f" (line INTEGER PRIMARY KEY, email TEXT, email_key {key_type}, name TEXT, first_name TEXT, raw TEXT)"
    )
    index = "temp.import_rows_key" if dialect(conn) == "sqlite" else "import_rows_key"
    conn.execute(f"CREATE INDEX IF NOT EXISTS {index} ON import_rows (email_key, line)")
    conn.execute("DELETE FROM import_rows")
    batch: list[tuple[int, str, str, str, str, str]] = []
    for row in _parse_rows(path, errors):
        batch.append(row)
        if len(batch) >= _INSERT_BATCH:
            _insert_rows(conn, batch)
            batch.clear()
    _insert_rows(conn, batch)
    first = "(SELECT MIN(j.line) FROM import_rows j WHERE j.email_key = i.email_key)"
    errors.extend(
        RowProblem(line, email, f"duplicate of line {first_line}")
        for line, email, first_line in conn.execute(
            f"SELECT i.line, i.raw, {first} AS f FROM import_rows i WHERE i.line > {first}"
        )
    )
    conn.execute(f"DELETE FROM import_rows AS i WHERE i.line > {first}")
    kept = int(conn.execute("SELECT COUNT(*) FROM import_rows").fetchone()[0])
    conn.commit()
    return kept


def _insert_rows(conn: Connection, rows: list[tuple[int, str, str, str, str, str]]) -> None:
    if dialect(conn) == "postgresql":
        conn.copy_rows("import_rows", _IMPORT_COLUMNS, rows)  # type: ignore[attr-defined]
    else:
        conn.executemany("INSERT INTO import_rows VALUES (?, ?, ?, ?, ?, ?)", rows)


def import_csv(conn: Connection, path: Path) -> ImportReport:
    """Import a CSV (`email`, optional `name` and `first_name`) in one transaction; bad rows are reported by line.

    The greeting uses `first_name` only: without that column nobody is greeted by name, because no rule can
    tell the first name inside "Doe, Jane" or "Li Wei".
    """
    path = Path(path)
    errors: list[RowProblem] = []
    try:
        kept = _load(conn, path, errors)
    except BaseException:
        conn.rollback()
        raise
    now = utc_now()
    with transaction(conn):
        skipped_rows = tuple(
            RowProblem(line, email, f"skipped: {status}")
            for line, email, status in conn.execute(
                "SELECT i.line, i.email, s.status FROM import_rows i JOIN subscribers s USING (email_key)"
                " WHERE s.status != 'subscribed' ORDER BY i.line"
            )
        )
        # An empty name in the file means "no name given", never "erase the name we have".
        updated = conn.execute(
            "UPDATE subscribers SET"
            " name = CASE WHEN i.name != '' THEN i.name ELSE subscribers.name END,"
            " first_name = CASE WHEN i.first_name != '' THEN i.first_name ELSE subscribers.first_name END,"
            " updated_at = ? FROM import_rows i"
            " WHERE subscribers.email_key = i.email_key AND subscribers.status = 'subscribed'"
            " AND ((i.name != '' AND subscribers.name != i.name)"
            " OR (i.first_name != '' AND subscribers.first_name != i.first_name))",
            (now,),
        ).rowcount
        added = conn.execute(
            "INSERT INTO subscribers (email, email_key, name, first_name, status, created_at, updated_at)"
            " SELECT email, email_key, name, first_name, 'subscribed', ?, ? FROM import_rows i"
            " WHERE NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.email_key = i.email_key) ORDER BY line",
            (now, now),
        ).rowcount
        conn.execute("DELETE FROM import_rows")
    return ImportReport(
        added=added,
        updated=updated,
        unchanged=kept - added - updated - len(skipped_rows),
        skipped=len(skipped_rows),
        errors=tuple(sorted(errors)),
        skipped_rows=skipped_rows,
    )
