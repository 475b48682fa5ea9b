"""Settings: one frozen, validated record loaded once at the CLI edge from newsletter.toml + environment."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .masking import mask_url
from .text import is_safe_link  # .tokens (and itsdangerous) load where a secret is read: not for build

__all__ = ["Settings", "Source", "load_settings", "signing_secret", "signing_key", "SigningSecret",
           "is_dns_name", "resolver_address", "CONFIG_NAME"]

CONFIG_NAME = "newsletter.toml"
#: Webhook providers whose key comes from NEWSLETTER_<NAME>_WEBHOOK_KEY (see docs/bounces.md).
WEBHOOK_PROVIDERS = ("postmark", "mailgun", "sendgrid")


@dataclass(frozen=True)
class Source:
    """A configured source: a reader `kind` ("feed") and a URL or a path relative to the project."""

    kind: str
    location: str
    journal: str | None = None  # used when an entry does not name its journal

    @property
    def remote(self) -> bool:
        return self.location.startswith(("http://", "https://"))


@dataclass(frozen=True, repr=False)  # its own __repr__ below (a generated one is compiled, then unused)
class Settings:
    """Everything below the CLI receives what it needs from here; secrets come from the environment."""

    root: Path
    sender_name: str = "MS Research in Plain Words"
    sender_email: str = "newsletter@ms-research.example.org"
    reply_to: str | None = None
    site_name: str = "MS Research in Plain Words"
    site_url: str = "https://ms-research.example.org"
    postal_address: str = "MS Research in Plain Words, 12 Example Street, Springfield 00000, USA"
    list_id: str = "research-news.ms-research.example.org"
    language: str = "en"
    default_limit: int = 6
    max_age_days: int = 90  # the oldest summary an issue may take, in days before the issue date
    timezone: str = "UTC"
    content_dir: Path = Path("content")
    issues_dir: Path = Path("issues")
    templates_dir: Path = Path("templates")
    database: Path = Path("var/newsletter.sqlite3")
    database_url: str | None = None  # `database = "postgresql://..."` lands here; `database` then places lock files
    sources: tuple[Source, ...] = ()
    transport: str = "maildir:outbox"
    connections: int = 1
    rate: float | None = None  # messages per second, None = as fast as the server takes them
    lease_seconds: float = 60.0  # a sender's claim on a recipient lasts this long unrenewed (docs/scaling.md)
    public_base_url: str = "https://ms-research.example.org/newsletter"  # where `newsletter serve` is reachable
    unsubscribe_mailto: str | None = None  # a mailbox someone processes; None = the HTTPS link alone
    seed_subscribers: Path | None = None  # demo: a CSV imported by `publish` while the list is empty
    misfire_grace_seconds: int = 24 * 3600
    # After the send (docs/bounces.md): VERP, the bounce mailbox, scoring, the auto-pause, webhooks.
    verp_address: str | None = None  # e.g. bounces@bounce.example.org; None = envelope sender is sender_email
    bounce_mailbox: str | None = None  # maildir:PATH or imaps://USER@HOST/INBOX
    bounce_fetch_minutes: int = 10  # `newsletter scheduler` reads the bounce mailbox this often
    soft_bounce_threshold: float = 1.0
    pause_complaint_rate: float = 0.003
    pause_hard_bounce_rate: float = 0.05
    pause_min_delivered: int = 1000
    ses_topic_arn: str | None = None  # the one SNS topic /hooks/ses accepts
    two_person_approval: bool = True  # the desk: an approver cannot approve an issue they edited last
    desk_idle_minutes: int = 60  # a desk session ends after this long without a request
    glossary: Path = Path("content/glossary.yml")  # plain explanations `check` suggests
    readability_warn_grade: float = 8.0  # Flesch-Kincaid grade above which `check` warns (NIH, AMA: 6-8)
    readability_error_grade: float = 12.0  # above this our own texts fail `check`; feed entries only warn
    busy_timeout: float = 5.0  # seconds a database writer waits for another's lock before giving up
    dkim_selector: str | None = None  # with dkim_key, `send` DKIM-signs every message (newsletter/dkim.py)
    dkim_key: Path | None = None  # the private key FILE (mode 0600); never the key itself
    dkim_domain: str | None = None  # the d= domain; default: the sender's domain
    dns_resolver: str | None = None  # "IP" or "IP:PORT" for `newsletter doctor`; None = the system's resolver
    secret: str = ""  # from NEWSLETTER_SECRET, never from a file under issues/
    smtp_password: str | None = None  # from NEWSLETTER_SMTP_PASSWORD
    bounce_password: str | None = None  # from NEWSLETTER_BOUNCE_PASSWORD
    webhook_keys: tuple[tuple[str, str], ...] = ()  # (provider, key) from NEWSLETTER_<PROVIDER>_WEBHOOK_KEY
    config_file: Path | None = None  # the newsletter.toml these came from; None = built-in defaults

    @property
    def transport_secrets(self) -> dict[str, str]:
        """The one path by which secrets reach a transport: name -> value, only those that are set."""
        return {"password": self.smtp_password} if self.smtp_password else {}

    def path(self, p: Path) -> Path:
        """Resolve a configured path against the project root."""
        return p if p.is_absolute() else self.root / p

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def __repr__(self) -> str:  # keep secrets out of tracebacks and logs
        return f"Settings(root={self.root!s}, transport={mask_url(self.transport)!r})"


_PATH_KEYS = {"content_dir", "issues_dir", "templates_dir", "database", "seed_subscribers", "glossary", "dkim_key"}
_GRADE_KEYS = {"readability_warn_grade", "readability_error_grade"}
_SECRET_KEYS = {"secret", "smtp_password", "bounce_password", "webhook_keys"}
_ALLOWED = ({f.name for f in fields(Settings)} - {"root", "config_file"} - _SECRET_KEYS) | {"feeds"}


def _sources(key: str, value: Any, path: Path) -> tuple[Source, ...]:
    """`sources = [{ kind = "feed", location = "..." }]`; the older `feeds = [...]` is read as kind "feed"."""
    if not isinstance(value, list):
        raise ConfigError("must be a list of tables like { kind = \"feed\", location = \"...\" }", key=key, path=path)
    keys = {"location", "journal"} if key == "feeds" else {"kind", "location", "journal"}
    out = []
    for i, item in enumerate(value):
        if key == "feeds" and isinstance(item, str):
            item = {"location": item}
        if not isinstance(item, dict) or not isinstance(item.get("location"), str) or \
                (key == "sources" and not isinstance(item.get("kind"), str)):
            shape = "a string or {location=..., journal=...}" if key == "feeds" else \
                "a table { kind = \"feed\", location = \"...\", journal = \"...\" (optional) }"
            raise ConfigError(f"must be {shape}", key=f"{key}[{i}]", path=path)
        extra = set(item) - keys
        if extra:
            raise ConfigError(f"unknown key(s) {sorted(extra)}", key=f"{key}[{i}]", path=path)
        out.append(Source(item.get("kind", "feed"), item["location"], item.get("journal")))
    return tuple(out)


def _check_type(key: str, value: Any, path: Path) -> Any:
    if key in ("sources", "feeds"):
        return _sources(key, value, path)
    default = Settings.__dataclass_fields__[key].default
    if key == "database" and isinstance(value, str) and "://" in value:
        return value  # a database URL, checked by _validate
    if key in _PATH_KEYS:
        if not isinstance(value, str) or not value:
            raise ConfigError("must be a non-empty path string", key=key, path=path)
        return Path(value)
    if key == "busy_timeout":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 600:
            raise ConfigError("must be a number of seconds between 0 and 600", key=key, path=path)
        return float(value)
    if key in _GRADE_KEYS:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 30:
            raise ConfigError("must be a school grade between 0 and 30, e.g. 8", key=key, path=path)
        return float(value)
    if key == "rate":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError("must be a positive number (messages per second)", key=key, path=path)
        return float(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError("must be true or false", key=key, path=path)
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError("must be a number, 0 or more", key=key, path=path)
        return float(value)
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError("must be a positive whole number", key=key, path=path)
        return value
    if default is None or isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError("must be a string", key=key, path=path)
        return value
    return value


def _validate(s: Settings, path: Path | str) -> Settings:
    from email_validator import EmailNotValidError, validate_email

    for key in ("sender_email", "reply_to", "unsubscribe_mailto", "verp_address"):
        value = getattr(s, key)
        if value is None:
            continue
        try:
            validate_email(value, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ConfigError(f"{value!r} is not a valid address: {exc}", key=key, path=path) from None
    for key in ("site_url", "public_base_url"):
        if not is_safe_link(getattr(s, key), allow_mailto=False):
            raise ConfigError("must be an absolute http(s) URL without spaces or control characters",
                              key=key, path=path)
    host = urlsplit(s.public_base_url).hostname or ""
    if not s.public_base_url.startswith("https://") and host not in ("localhost", "127.0.0.1", "::1"):
        raise ConfigError("must be https:// (unsubscribe links and RFC 8058 one-click need HTTPS)",
                          key="public_base_url", path=path)
    try:
        zoneinfo.ZoneInfo(s.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown timezone {s.timezone!r} (use an IANA name like Europe/Berlin)",
                          key="timezone", path=path) from None
    if s.verp_address is not None and "+" in s.verp_address.partition("@")[0]:
        raise ConfigError("must be a plain address like bounces@bounce.example.org (no +)", key="verp_address",
                          path=path)
    if s.bounce_mailbox is not None and not s.bounce_mailbox.startswith(("maildir:", "imaps://")):
        raise ConfigError("must be maildir:PATH or imaps://USER@HOST/FOLDER", key="bounce_mailbox", path=path)
    for key in ("pause_complaint_rate", "pause_hard_bounce_rate"):
        if not 0 < getattr(s, key) <= 1:
            raise ConfigError("must be a fraction between 0 and 1 (0.003 = 0.3 %)", key=key, path=path)
    if not s.postal_address.strip():
        raise ConfigError("a postal address is required in every commercial email footer", key="postal_address", path=path)
    if s.readability_error_grade < s.readability_warn_grade:
        raise ConfigError(f"must not be below readability_warn_grade ({s.readability_warn_grade:g})",
                          key="readability_error_grade", path=path)
    for key in ("sender_name", "postal_address", "site_name", "list_id"):
        if any(c in getattr(s, key) for c in "\r\n\0"):
            raise ConfigError("must be a single line", key=key, path=path)
    _validate_dkim(s, path)
    db = urlsplit(s.database_url or "")
    if s.database_url is not None and (db.scheme not in ("postgresql", "postgres") or db.password is not None):
        raise ConfigError(f"{mask_url(s.database_url)!r}: use a file path (SQLite) or postgresql://USER@HOST/DB, "
                          "the password in NEWSLETTER_DATABASE_PASSWORD or a libpq service file", key="database", path=path)
    return s


_DNS_NAME = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def is_dns_name(text: str) -> bool:
    """Dot-separated labels of letters, digits and inner hyphens (a DKIM selector, a domain)."""
    return len(text) <= 253 and _DNS_NAME.fullmatch(text) is not None


def _validate_dkim(s: Settings, path: Path | str) -> None:
    """DKIM and resolver keys; the key file itself is read when a send starts (newsletter.dkim.signer_for)."""
    if s.dkim_key is not None and "BEGIN" in str(s.dkim_key):
        raise ConfigError("must be the path of the key file, not the key itself (keys never go in the settings)",
                          key="dkim_key", path=path)
    if (s.dkim_selector is None) != (s.dkim_key is None):
        raise ConfigError("dkim_selector and dkim_key go together (both, or neither)",
                          key="dkim_selector" if s.dkim_selector is None else "dkim_key", path=path)
    if s.dkim_selector is not None and not is_dns_name(s.dkim_selector):
        raise ConfigError(f"{s.dkim_selector!r} is not a DNS name (letters, digits, hyphens, dots)",
                          key="dkim_selector", path=path)
    if s.dkim_domain is not None:
        sender_domain = s.sender_email.rpartition("@")[2].lower()
        domain = s.dkim_domain.lower().rstrip(".")
        if not is_dns_name(domain) or not (sender_domain == domain or sender_domain.endswith("." + domain)):
            # DMARC only counts a DKIM pass whose d= is the From domain or a parent of it.
            raise ConfigError(f"{s.dkim_domain!r} must be the sender's domain ({sender_domain}) or a parent of it",
                              key="dkim_domain", path=path)
    if s.dns_resolver is not None:
        try:
            resolver_address(s.dns_resolver)
        except ValueError:
            raise ConfigError(f"{s.dns_resolver!r} must be an IP address, optionally with :PORT (127.0.0.1:5353)",
                              key="dns_resolver", path=path) from None


def resolver_address(address: str) -> tuple[str, int]:
    """A DNS server as "IP" or "IP:PORT" (IPv6 without a port) -> (ip, port); ValueError for anything else."""
    host, port = address.split(":") if address.count(":") == 1 else (address, "53")
    ipaddress.ip_address(host)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(address)
    return host, int(port)


@dataclass(frozen=True, repr=False)  # its own __repr__ below
class SigningSecret:
    """The key that signs links, and where it came from (said at start-up; the value never is)."""

    value: str
    source: str  # "NEWSLETTER_SECRET" or the path of the demo's generated file

    @property
    def from_file(self) -> bool:
        from .tokens import SECRET_ENV

        return self.source != SECRET_ENV

    def __repr__(self) -> str:
        return f"SigningSecret(source={self.source!r})"


def signing_key(settings: Settings) -> SigningSecret:
    """NEWSLETTER_SECRET (checked for strength); for the embedded maildir demo only, a generated
    per-installation secret in var/secret, written atomically (0600) and refused when empty or short."""
    from .tokens import HOW_TO_MAKE_A_SECRET, SECRET_ENV, check_secret

    if settings.secret:
        return SigningSecret(check_secret(settings.secret), SECRET_ENV)
    transport, database = settings.transport, settings.path(settings.database)
    if not transport.startswith(("maildir:", "memory:")):
        raise ConfigError(
            "NEWSLETTER_SECRET is not set: it signs unsubscribe links and must come from the environment "
            f"(for example `export NEWSLETTER_SECRET=$({HOW_TO_MAKE_A_SECRET})`)",
            key="NEWSLETTER_SECRET",
        )
    # Embedded demo default: a per-installation secret kept next to the database (never under issues/).
    secret_file = database.parent / "secret"
    try:
        if not secret_file.exists():
            _create_secret_file(secret_file)
        value = secret_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot create or read the demo signing secret at {secret_file}: {exc.strerror or exc}",
                          key="NEWSLETTER_SECRET") from None
    except UnicodeDecodeError:
        value = ""
    try:
        check_secret(value, source=str(secret_file))
    except ConfigError:
        raise ConfigError(f"is empty or too short to sign links; delete it to have a new one generated, or set "
                          f"NEWSLETTER_SECRET (`{HOW_TO_MAKE_A_SECRET}`)", key=str(secret_file)) from None
    return SigningSecret(value, str(secret_file))


def _create_secret_file(path: Path) -> None:
    """Write a fresh secret to a temporary file, then link it into place: a reader never sees a half-written
    (empty) file, and when two processes race, both end up with the first one's secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process was first; its secret wins
    finally:
        temp.unlink(missing_ok=True)


def signing_secret(settings: Settings) -> str:
    """The value of signing_key(settings)."""
    return signing_key(settings).value


def load_settings(config: Path | None = None, *, env: Mapping[str, str] | None = None,
                  root: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read newsletter.toml (if present) and the environment; every error names the key."""
    env = os.environ if env is None else env
    if config is None and env.get("NEWSLETTER_CONFIG"):
        config = Path(env["NEWSLETTER_CONFIG"])
    if config is None:
        base = root or Path.cwd()
        # Like git: from a subfolder (content/, issues/<id>/) the project's newsletter.toml is found above.
        folders = [base] if root is not None else [base, *base.resolve().parents]
        config = next((f / CONFIG_NAME for f in folders if (f / CONFIG_NAME).is_file()), None)
        root = config.parent if config is not None else base
    values: dict[str, Any] = {}
    if config is not None:
        if not config.exists():
            raise ConfigError("configuration file not found", path=config)
        try:
            data = tomllib.loads(config.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", path=config) from None
        except UnicodeDecodeError:
            raise ConfigError("not UTF-8 text", path=config) from None
        root = root or config.resolve().parent
        section = data.get("newsletter", data)
        for key, value in section.items():
            if key in _SECRET_KEYS or key.endswith("password"):
                raise ConfigError("secrets belong in the environment (NEWSLETTER_SECRET, NEWSLETTER_SMTP_PASSWORD), "
                                  "not in a file", key=key, path=config)
            if key not in _ALLOWED:
                raise ConfigError(f"unknown setting (known: {', '.join(sorted(_ALLOWED))})", key=key, path=config)
            checked = _check_type(key, value, config)
            if key in ("sources", "feeds"):  # `feeds` is the older spelling of feed sources
                values["sources"] = values.get("sources", ()) + checked
            elif key == "database" and isinstance(checked, str):
                values["database_url"] = checked
            else:
                values[key] = checked
    assert root is not None
    if env.get("NEWSLETTER_TRANSPORT"):
        values["transport"] = env["NEWSLETTER_TRANSPORT"]
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    found = config.resolve() if config is not None else None
    settings = Settings(root=root.resolve(), config_file=found, **values)
    settings = _validate(settings, config or "defaults")
    return replace(settings, secret=env.get("NEWSLETTER_SECRET", ""), smtp_password=env.get("NEWSLETTER_SMTP_PASSWORD") or None,
                   bounce_password=env.get("NEWSLETTER_BOUNCE_PASSWORD") or None,
                   webhook_keys=tuple((name, env[f"NEWSLETTER_{name.upper()}_WEBHOOK_KEY"])
                                      for name in WEBHOOK_PROVIDERS if env.get(f"NEWSLETTER_{name.upper()}_WEBHOOK_KEY")))
