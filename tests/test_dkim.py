"""DKIM: keygen writes a private key and its record; `send` signs every message; two verifiers we did not write agree.

The verifiers are dkimpy's and Debian's opendkim (`opendkim-testmsg`), each fetching the public key
from a real DNS server on 127.0.0.1 that the test starts with the record `dkim keygen` printed.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import mailbox
import os
import re
import shutil
import subprocess
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.canonicalization import Relaxed
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cli_inprocess import run_newsletter
from newsletter.store import sqlite as db, subscribers
from newsletter.approval import approve
from newsletter.jobs.delivery import send_full, send_proof
from newsletter.dkim import DkimSigner, generate_key, load_private_key, parse_record, relaxed_body
from newsletter.doctor import DnsLookup
from newsletter.errors import ConfigError
from newsletter.jobs.issues import build, compose
from newsletter.settings import load_settings

from dns_sandbox import run_with_zone, sandbox_unavailable
from dns_server import dns_server

DATE = dt.date(2026, 11, 25)
SECRET = "test-secret-not-for-production-use"
DOMAIN = "ms-research.example.org"  # the sample project's sender domain
REQUIRED = {"from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post",
            "mime-version", "content-type"}


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_newsletter(args, cwd=project, env=dict(os.environ, NEWSLETTER_SECRET=SECRET))


def keygen(project: Path, selector: str = "news1") -> tuple[Path, str]:
    """Run `newsletter dkim keygen` and read the record back from what it printed."""
    result = cli(project, "dkim", "keygen", "--selector", selector)
    assert result.returncode == 0, result.stderr
    name = re.search(r"name:\s+(\S+)", result.stdout).group(1)  # type: ignore[union-attr]
    value = re.search(r"value: (v=DKIM1;.*)", result.stdout).group(1)  # type: ignore[union-attr]
    assert name == f"{selector}._domainkey.{DOMAIN}"
    return project / "var" / "dkim" / f"{selector}.pem", value


def enable_dkim(project: Path, selector: str = "news1") -> None:
    config = project / "newsletter.toml"
    config.write_text(config.read_text() + f'\ndkim_selector = "{selector}"\ndkim_key = "var/dkim/{selector}.pem"\n')


def signed_outbox(project: Path) -> list[bytes]:
    box = mailbox.Maildir(project / "outbox", create=False)
    return [box.get_bytes(key) for key in box.keys()]


def dkimpy_verify(message: bytes, resolver: str) -> bool:
    """dkimpy's verifier, fetching the key over real DNS from the test's server."""
    lookup = DnsLookup(resolver)
    return dkim.verify(message, dnsfunc=lambda name, timeout=5: lookup.txt(name.decode().rstrip("."))[0].encode())


@pytest.fixture
def sent(project: Path) -> tuple[Path, str]:
    """The sample issue sent to the 8 sample subscribers with DKIM on; returns (project, published record)."""
    key, record = keygen(project)
    enable_dkim(project)
    settings = load_settings(project / "newsletter.toml", env={"NEWSLETTER_SECRET": SECRET})
    issue = compose(settings, date=DATE)
    build(settings, issue.folder)
    conn = db.connect(settings.path(settings.database))
    subscribers.import_csv(conn, project / "content" / "subscribers.csv")
    conn.close()
    approve(issue.folder)
    assert send_full(settings, issue.folder).sent == 8
    return project, record


def test_keygen_writes_a_private_key_only_the_owner_can_read(project: Path) -> None:
    key_path, record = keygen(project)
    assert key_path.stat().st_mode & 0o777 == 0o600
    key = load_private_key(key_path)
    assert key.key_size == 2048
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    assert parse_record(record) == {"v": "DKIM1", "k": "rsa", "p": base64.b64encode(public).decode()}
    assert not list(key_path.parent.glob(".*.tmp")), "the temporary file is gone"
    again = cli(project, "dkim", "keygen", "--selector", "news1")
    assert again.returncode == 1 and "already exists" in again.stderr and "new selector" in again.stderr
    assert load_private_key(key_path).private_numbers() == key.private_numbers(), "the old key is untouched"
    assert cli(project, "dkim", "keygen", "--selector", "news1", "--force").returncode == 0
    assert load_private_key(key_path).private_numbers() != key.private_numbers()
    bad = cli(project, "dkim", "keygen", "--selector", "news 1")
    assert bad.returncode != 0 and "--selector" in bad.stderr


def test_every_sent_message_is_signed_and_dkimpy_verifies_it(sent: tuple[Path, str]) -> None:
    project, record = sent
    messages = signed_outbox(project)
    assert len(messages) == 8
    with dns_server({f"news1._domainkey.{DOMAIN}": [("TXT", record)]}) as (resolver, served):
        for data in messages:
            assert data.count(b"DKIM-Signature:") == 1
            assert dkimpy_verify(data, resolver), data[:400]
            sig = email.message_from_bytes(data, policy=email.policy.compat32)["DKIM-Signature"]
            tags = parse_record(sig)
            assert tags["c"] == "relaxed/relaxed" and tags["a"] == "rsa-sha256"
            assert tags["d"] == DOMAIN and tags["s"] == "news1"
            assert REQUIRED <= set(tags["h"].split(":"))
        assert (f"news1._domainkey.{DOMAIN}", "TXT") in served.queries, "the key came over DNS"
        # Any change in transit must fail: a word in the body, a header, or an extra From added on top.
        data = messages[0]
        assert not dkimpy_verify(data.replace(b"Hello", b"Hallo", 1), resolver)
        assert not dkimpy_verify(data.replace(b"Subject: ", b"Subject: Re: ", 1), resolver)
        assert not dkimpy_verify(b"From: Mallory <m@evil.example>\r\n" + data, resolver)


@pytest.mark.skipif(shutil.which("opendkim-testmsg") is None, reason="Debian's opendkim-tools is not installed "
                    "(.ci/run installs it)")
def test_opendkim_verifies_the_signatures(sent: tuple[Path, str], tmp_path: Path) -> None:
    why = sandbox_unavailable()
    if why:
        pytest.skip(why)
    project, record = sent
    messages = signed_outbox(project)
    for i, data in enumerate(messages):
        (tmp_path / f"{i}.eml").write_bytes(data)
    (tmp_path / "tampered.eml").write_bytes(messages[0].replace(b"Hello", b"Hallo", 1))
    # One sandbox for all messages: opendkim-testmsg verifies one message per run, silent and 0 when it passes.
    script = (f"for f in {tmp_path}/[0-9]*.eml; do opendkim-testmsg < $f || exit 10; done; "
              f"opendkim-testmsg < {tmp_path}/tampered.eml; echo tampered=$?")
    zone = {f"news1._domainkey.{DOMAIN}": [("TXT", record)]}
    result = run_with_zone(zone, ["sh", "-c", script])
    assert result.returncode == 0, result.stderr.decode()
    assert b"tampered=0" not in result.stdout and b"tampered=" in result.stdout
    assert b"Bad signature" in result.stderr or b"body hash" in result.stderr.lower(), result.stderr
    # And with the wrong key published, opendkim refuses the genuine message.
    other = load_private_key(generate_key(tmp_path / "other.pem", selector="news1", domain=DOMAIN).path)
    from newsletter.dkim import public_record

    wrong = run_with_zone({f"news1._domainkey.{DOMAIN}": [("TXT", public_record(other))]},
                          ["opendkim-testmsg"], stdin=messages[0])
    assert wrong.returncode != 0 and b"Bad signature" in wrong.stderr


def test_proofs_are_signed_too(project: Path) -> None:
    _, record = keygen(project)
    enable_dkim(project)
    settings = load_settings(project / "newsletter.toml", env={"NEWSLETTER_SECRET": SECRET})
    issue = compose(settings, date=DATE)
    build(settings, issue.folder)
    send_proof(settings, issue.folder, ["editor@example.org"])
    (data,) = signed_outbox(project)
    with dns_server({f"news1._domainkey.{DOMAIN}": [("TXT", record)]}) as (resolver, _):
        assert dkimpy_verify(data, resolver)


def test_signature_survives_non_ascii_and_long_values() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = DkimSigner(key, selector="s", domain="example.org", clock=lambda: 1_700_000_000)
    from newsletter.dkim import public_record

    message = ("From: =?utf-8?q?J=C3=B6rg?= <news@example.org>\r\nTo: a@example.net\r\n"
               "Subject: " + "word " * 40 + "\r\n\tfolded\r\nDate: Tue, 01 Dec 2026 08:00:00 +0000\r\n"
               "Message-ID: <1@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
               "trailing spaces   \r\n\r\n\r\n").encode()
    signed = signer(message)
    assert b"t=1700000000" in signed
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: public_record(key).encode())
    # relaxed/relaxed: re-folding a header and trailing blanks in the body do not break it
    assert dkim.verify(signed.replace(b"\r\n\tfolded", b"\r\n folded").replace(b"spaces   \r\n", b"spaces\r\n"),
                       dnsfunc=lambda name, timeout=5: public_record(key).encode())


def _write_key(path: Path, key: object, mode: int = 0o600) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                            serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(mode)


def test_bad_dkim_settings_name_the_key_or_file(project: Path, tmp_path: Path) -> None:
    config = project / "newsletter.toml"
    base = config.read_text()

    def load(extra: str):  # noqa: ANN202
        config.write_text(base + "\n" + extra + "\n")
        return load_settings(config, env={"NEWSLETTER_SECRET": SECRET})

    with pytest.raises(ConfigError, match="dkim_key: must be the path of the key file, not the key itself"):
        load('dkim_selector = "s"\ndkim_key = "-----BEGIN RSA PRIVATE KEY-----MIIE..."')
    with pytest.raises(ConfigError, match="dkim_key: dkim_selector and dkim_key go together"):
        load('dkim_selector = "s"')
    with pytest.raises(ConfigError, match="dkim_selector: 'a b' is not a DNS name"):
        load('dkim_selector = "a b"\ndkim_key = "k.pem"')
    with pytest.raises(ConfigError, match="dkim_domain: 'other.org' must be the sender's domain"):
        load('dkim_selector = "s"\ndkim_key = "k.pem"\ndkim_domain = "other.org"')
    assert load('dkim_selector = "s"\ndkim_key = "k.pem"\ndkim_domain = "example.org"').dkim_domain == "example.org"

    from newsletter.dkim import signer_for

    settings = load('dkim_selector = "s"\ndkim_key = "var/missing.pem"')
    with pytest.raises(ConfigError, match=r"var/missing.pem does not exist .*dkim keygen"):
        signer_for(settings)
    key_file = project / "k.pem"
    settings = load('dkim_selector = "s"\ndkim_key = "k.pem"')
    _write_key(key_file, rsa.generate_private_key(public_exponent=65537, key_size=2048), mode=0o644)
    with pytest.raises(ConfigError, match=r"k.pem can be read by other users; run `chmod 600"):
        signer_for(settings)
    _write_key(key_file, ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(ConfigError, match="k.pem is not an RSA key"):
        signer_for(settings)
    key_file.write_text("not a key")
    with pytest.raises(ConfigError, match="k.pem is not an unencrypted PEM private key"):
        signer_for(settings)
    _write_key(key_file, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert signer_for(settings) is not None
    # A send with an unsafe key stops with that one line before any message goes out.
    key_file.chmod(0o640)
    assert cli(project, "compose", "--date", DATE.isoformat()).returncode == 0
    assert cli(project, "build", f"issues/{DATE}").returncode == 0
    result = cli(project, "send", f"issues/{DATE}", "--to", "a@example.org")
    assert result.returncode == 1 and "k.pem can be read by other users" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (project / "outbox").exists()


_PIECES = st.sampled_from([b"a", b"word", b"=3D", b" ", b"  ", b"\t", b" \t ", b"\r\n", b"\r\n\r\n", b"\r", b"\n"])


@given(st.lists(_PIECES, max_size=40))
@hypothesis_settings(max_examples=400, deadline=None)
def test_relaxed_body_gives_dkimpys_bytes(pieces: list[bytes]) -> None:
    """Our fast canonicalisation is dkimpy's, byte for byte, including bare CR/LF and blank-only lines."""
    body = b"".join(pieces)
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


def test_signature_matches_dkimpys_own_signer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same headers, same time, same key: our DKIM-Signature is dkimpy's DKIM.sign(), byte for byte."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    message = (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: x  y\r\nDate: Tue, 01 Dec 2026 08:00:00 +0000\r\n"
               b"Message-ID: <1@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
               b"  indented\ttext   \r\nmore  text\r\n\r\n")
    ours = DkimSigner(key, selector="s", domain="example.org", clock=lambda: 1_700_000_000).header(message)
    monkeypatch.setattr(dkim.time, "time", lambda: 1_700_000_000)
    include = parse_record(ours.decode())["h"].split(":")
    theirs = dkim.DKIM(message).sign(b"s", b"example.org", pem, canonicalize=(b"relaxed", b"relaxed"),
                                     include_headers=[h.encode() for h in include])
    assert ours == theirs
