"""The exception hierarchy: every error newsletter raises carries the data needed to act on it."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "NewsletterError",
    "ConfigError",
    "SourceError",
    "SourceErrors",
    "IssueError",
    "TemplateError",
    "CheckFailed",
    "SubscriberError",
    "HeaderError",
    "DeliveryError",
    "TransientDeliveryError",
    "PermanentDeliveryError",
    "ConnectionRefusedForAll",
    "RecipientBounced",
    "StopRun",
    "ScheduleError",
    "SchedulerRunning",
    "ApprovalError",
    "LedgerError",
    "TokenError",
    "ComplainedError",
]


class NewsletterError(Exception):
    """Root of every error the CLI turns into one clear line and a non-zero exit."""

    exit_code = 1


class ConfigError(NewsletterError):
    """A setting is missing or malformed; `key` names it."""

    def __init__(self, message: str, *, key: str | None = None, path: Path | str | None = None) -> None:
        self.key = key
        self.path = path
        where = ""
        if path:
            where += f"{path}: "
        if key:
            where += f"{key}: "
        super().__init__(f"{where}{message}")


class SourceError(NewsletterError):
    """A summary file or feed could not be read; names the file, line (when known) and field."""

    def __init__(
        self,
        path: Path | str,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = message
        where = self.path
        if line is not None:
            where += f":{line}"
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")


class SourceErrors(SourceError):
    """Several sources are broken; `errors` holds each one, so an editor fixes them all in one go."""

    def __init__(self, errors: list[SourceError]) -> None:
        self.errors = tuple(errors)
        first = errors[0]
        NewsletterError.__init__(self, f"{len(errors)} summary sources are broken:\n"
                                       + "\n".join(f"  {e}" for e in errors))
        self.path, self.line, self.field, self.reason = first.path, first.line, first.field, first.reason


class IssueError(NewsletterError):
    """An issue folder or its issue.toml is wrong (unknown summary id, bad field, missing file)."""

    def __init__(self, path: Path | str, message: str, *, field: str | None = None) -> None:
        self.path = str(path)
        self.field = field
        where = self.path + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


class TemplateError(NewsletterError):
    """A template failed to load, render or compile."""


class CheckFailed(NewsletterError):
    """Preflight found errors; the report has already been printed."""


class SubscriberError(NewsletterError):
    """A subscriber address or row is invalid; `address` / `line` name it."""

    def __init__(self, message: str, *, address: str | None = None, line: int | None = None) -> None:
        self.address = address
        self.line = line
        super().__init__(message)


class ComplainedError(SubscriberError):
    """The address reported our mail as spam: it is never resubscribed by a link, a form or an import."""


class HeaderError(NewsletterError):
    """A header value cannot be made safe (it would inject a header or cannot be encoded)."""

    def __init__(self, header: str, message: str) -> None:
        self.header = header
        super().__init__(f"header {header}: {message}")


class ApprovalError(NewsletterError):
    """A full send was refused: the issue is not approved, or changed since approval."""


class LedgerError(NewsletterError):
    """The send ledger (SQLite) could not be read or written."""


class TokenError(NewsletterError):
    """A signed link token is invalid; `reason` is "invalid", "expired" or "malformed"."""

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        self.reason = reason
        super().__init__(message)


class DeliveryError(NewsletterError):
    """A message could not be delivered; carries the SMTP code and the recipients concerned."""

    def __init__(self, message: str, *, code: int | None = None, recipient: str | None = None) -> None:
        self.code = code
        self.recipient = recipient
        self.reason = message
        prefix = f"{code} " if code is not None else ""
        who = f" ({recipient})" if recipient else ""
        super().__init__(f"{prefix}{message}{who}")


# What a transport raises tells the send loop what to do; each error carries the code and the server's text.

class TransientDeliveryError(DeliveryError):
    """Retry later (SMTP: a 4xx or a dropped connection); after the retries the row stays pending."""


class PermanentDeliveryError(DeliveryError):
    """This recipient failed for good: record it and move on."""


class RecipientBounced(PermanentDeliveryError):
    """This recipient's address does not exist: record it and mark the subscriber bounced."""


class StopRun(DeliveryError):
    """Nothing can be delivered to anyone now (a refused login, a full disk): stop the run; rows stay pending."""


class ConnectionRefusedForAll(StopRun):
    """The server refuses every message (auth, TLS, relay denied): stop the run early."""


class ScheduleError(NewsletterError):
    """A schedule request is invalid or cannot be carried out; `value` is the input at fault."""

    def __init__(self, message: str, *, value: str | None = None) -> None:
        self.value = value
        super().__init__(message)


class SchedulerRunning(ScheduleError):
    """Another `newsletter scheduler` holds the lock for this database."""

    def __init__(self, message: str, *, pid: int | None) -> None:
        self.pid = pid
        super().__init__(message)
