"""DKIM: a private key file -> its DNS TXT record, and spliced message bytes -> the same bytes, signed.

Header canonicalisation, selection, hashing and folding are dkimpy's own functions (relaxed/relaxed,
RFC 6376). Two steps are ours, for speed (benchmarks/bench_dkim.py): the RSA goes to `cryptography`
(OpenSSL) with the key parsed once per send, where dkimpy's `dkim.sign()` re-parses the PEM and
does the RSA in pure Python per call; and the body is canonicalised by `relaxed_body`, which gives
the same bytes as dkimpy's (tests/test_dkim.py compares them) in a fraction of the time.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dkim as dkimpy
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim.canonicalization import CanonicalizationPolicy

from .errors import ConfigError

__all__ = ["SIGNED_HEADERS", "DkimSigner", "relaxed_body", "KeyRecord", "generate_key", "load_private_key", "public_record",
           "record_name", "signer_for", "zone_line", "parse_record"]

#: Signed once per occurrence, then once more each: an extra copy added in transit breaks the signature
#: (RFC 6376 §5.4.2 "over-signing"), so nobody can prepend a second From or List-Unsubscribe.
SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"list-id",
                  b"list-unsubscribe", b"list-unsubscribe-post", b"mime-version", b"content-type",
                  b"content-transfer-encoding")
_POLICY = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_NAME = b"DKIM-Signature"
_MIN_BITS = 1024  # receivers ignore shorter keys (RFC 8301); keygen writes 2048


def record_name(selector: str, domain: str) -> str:
    """Where the public key is published: `<selector>._domainkey.<domain>`."""
    return f"{selector}._domainkey.{domain}"


def public_record(key: rsa.RSAPrivateKey) -> str:
    """The TXT value to publish, `v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>`."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def zone_line(selector: str, domain: str, record: str) -> str:
    """The record as a BIND zone-file line; TXT strings hold at most 255 characters each."""
    chunks = " ".join(f'"{record[i:i + 250]}"' for i in range(0, len(record), 250))
    return f"{record_name(selector, domain)}. 3600 IN TXT ( {chunks} )"


def parse_record(text: str) -> dict[str, str]:
    """A DKIM key record's tags (`v`, `k`, `p`, ...), whitespace inside values removed (RFC 6376 §3.6.1)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip()] = re.sub(r"\s+", "", value)
    return tags


def load_private_key(path: Path, *, check_mode: bool = True) -> rsa.RSAPrivateKey:
    """Read an RSA private key file; every problem is one ConfigError naming the file."""
    try:
        info = path.stat()
        pem = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"the DKIM key file {path} does not exist (create one with "
                          "`newsletter dkim keygen --selector NAME`)", key="dkim_key") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the DKIM key file {path}: {exc.strerror}", key="dkim_key") from None
    if check_mode and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Like ssh: a key others can read is a key others may have copied.
        raise ConfigError(f"the DKIM key file {path} can be read by other users; run `chmod 600 {path}`",
                          key="dkim_key")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"{path} is not an unencrypted PEM private key", key="dkim_key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{path} is not an RSA key (mailbox providers verify rsa-sha256)", key="dkim_key")
    if key.key_size < _MIN_BITS:
        raise ConfigError(f"{path} holds a {key.key_size}-bit key; receivers ignore keys under {_MIN_BITS} bits "
                          "(use 2048)", key="dkim_key")
    return key


@dataclass(frozen=True)
class KeyRecord:
    """What `dkim keygen` made: the key file and the record to publish."""

    path: Path
    selector: str
    domain: str
    record: str

    @property
    def name(self) -> str:
        return record_name(self.selector, self.domain)


def generate_key(path: Path, *, selector: str, domain: str, bits: int = 2048, force: bool = False) -> KeyRecord:
    """Write a new RSA key to `path` (mode 0600 from the first byte, atomically) and return its record.

    The key goes to a temporary file in the same folder, is flushed to disk, then linked (or, with
    force, renamed) into place: a crash leaves either no key or a whole one, never half a key.
    """
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; a new key needs a new selector (or --force to replace it, "
                          "which breaks mail signed with the old one until DNS is updated)", key="dkim_key")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if someone created the file meanwhile: never overwrite silently
            os.unlink(tmp)
    except FileExistsError:
        raise ConfigError(f"{path} already exists", key="dkim_key") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return KeyRecord(path=path, selector=selector, domain=domain, record=public_record(key))


def _crlf_only(data: bytes) -> bool:
    """No bare CR or LF: every line ends in CRLF, as personalise writes them."""
    crlf = data.count(b"\r\n")
    return data.count(b"\n") == crlf and data.count(b"\r") == crlf


def _split(message: bytes) -> tuple[list[list[bytes]], bytes, bool]:
    """dkimpy's rfc822_parse, without re-splitting and re-joining a body that is CRLF-only already."""
    end = message.find(b"\r\n\r\n")
    if end < 0 or not _crlf_only(message):
        headers, body = dkimpy.rfc822_parse(message)  # bare line ends or no body: dkimpy's general path
        return headers, body, False
    headers, _ = dkimpy.rfc822_parse(message[:end + 4])
    return headers, message[end + 4:], True


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 relaxed body canonicalisation; the same bytes as dkimpy's, with C-speed bytes methods.

    dkimpy substitutes every single blank with a regular expression (thousands per newsletter, ms
    each message). Here: tabs become spaces, runs of spaces halve until none is left (a few passes
    of bytes.replace), the one blank that can then remain before a line end goes, and so do
    empty lines at the end. Bodies with bare CR or LF take dkimpy's own path.
    """
    return _relaxed_crlf_body(body) if _crlf_only(body) else _POLICY.canonicalize_body(body)


def _relaxed_crlf_body(body: bytes) -> bytes:
    text = body.replace(b"\t", b" ") if b"\t" in body else body
    while b"  " in text:
        text = text.replace(b"  ", b" ")
    if b" \r\n" in text:
        text = text.replace(b" \r\n", b"\r\n")
    while text.endswith(b"\r\n"):
        text = text[:-2]
    return text + b"\r\n" if text else b""


class DkimSigner:
    """Signs whole messages (CRLF bytes) for one selector and domain; the key is parsed once."""

    def __init__(self, key: rsa.RSAPrivateKey, *, selector: str, domain: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._selector = selector.encode("ascii")
        self._domain = domain.encode("ascii")
        self._clock = clock
        self._padding = padding.PKCS1v15()
        self._prehashed = Prehashed(hashes.SHA256())

    def header(self, message: bytes) -> bytes:
        """The `DKIM-Signature: ...\\r\\n` field for `message`, as dkimpy's DKIM.sign builds it."""
        headers, body, crlf_only = _split(message)
        present = [name.lower() for name, _ in headers if name.lower() in SIGNED_HEADERS]
        include = tuple(present) + SIGNED_HEADERS
        body_hash = base64.b64encode(hashlib.sha256(_relaxed_crlf_body(body) if crlf_only else relaxed_body(body)).digest())
        # dkimpy's tags in dkimpy's order, so the two signers' output can be compared byte for byte.
        fields = [(b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"), (b"d", self._domain),
                  (b"i", b"@" + self._domain), (b"q", b"dns/txt"), (b"s", self._selector), (b"t", str(int(self._clock())).encode("ascii")),
                  (b"h", b" : ".join(include)), (b"bh", body_hash),
                  (b"b", b"0" * 60)]  # placeholder: folds b= onto its own line, as dkimpy does
        value = dkimpy.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(_NAME))
        value = dkimpy.RE_BTAG.sub(b"\\1", value)
        digest = hashlib.sha256()
        dkimpy.hash_headers(digest, _POLICY, _POLICY.canonicalize_headers(headers), include,
                            (_NAME, b" " + value), None)
        signature = self._key.sign(digest.digest(), self._padding, self._prehashed)
        fields[-1] = (b"b", base64.b64encode(signature))
        value = dkimpy.fold(b"; ".join(b"=".join(f) for f in fields) + b"\r\n", namelen=len(_NAME))
        return _NAME + b": " + value

    def __call__(self, message: bytes) -> bytes:
        """The message with its signature prepended (a signature goes above the fields it covers)."""
        return self.header(message) + message


def signer_for(settings: object) -> DkimSigner | None:
    """The signer the settings ask for (`dkim_selector` + `dkim_key`), or None when they ask for none."""
    selector = getattr(settings, "dkim_selector", None)
    key_path = getattr(settings, "dkim_key", None)
    if not selector or key_path is None:
        return None
    domain = getattr(settings, "dkim_domain", None) or str(getattr(settings, "sender_email")).rpartition("@")[2]
    key = load_private_key(settings.path(key_path))  # type: ignore[attr-defined]
    return DkimSigner(key, selector=selector, domain=domain.lower())
