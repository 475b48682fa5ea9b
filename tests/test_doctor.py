"""`newsletter doctor` against a real DNS server on 127.0.0.1 (dnslib) serving zones with and without gaps."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from cli_inprocess import run_newsletter
from newsletter.dkim import generate_key
from newsletter.doctor import OK, PROBLEM, WARNING, DnsLookup, DnsUnreachable, Finding, diagnose
from newsletter.errors import ConfigError
from newsletter.settings import load_settings

from dns_server import dns_server, free_port

SECRET = "test-secret-not-for-production-use"
DOMAIN = "ms-research.example.org"
KEY_NAME = f"news1._domainkey.{DOMAIN}"


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_newsletter(args, cwd=project, env=dict(os.environ, NEWSLETTER_SECRET=SECRET))


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    made = generate_key(tmp_path / "news1.pem", selector="news1", domain=DOMAIN)
    return made.path, made.record


def healthy_zone(record: str) -> dict[str, list[tuple[str, str]]]:
    return {
        DOMAIN: [("TXT", "v=spf1 include:_spf.provider.example ~all"), ("TXT", "google-site-verification=abc"),
                 ("MX", "10 mail.ms-research.example.org")],
        "_spf.provider.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
        KEY_NAME: [("TXT", record)],
        f"_dmarc.{DOMAIN}": [("TXT", "v=DMARC1; p=quarantine; rua=mailto:dmarc@ms-research.example.org")],
    }


def run(zone: dict, key: tuple[Path, str] | None, **kwargs: object) -> dict[str, Finding]:
    with dns_server(zone) as (address, _):
        report = diagnose(DnsLookup(address), domain=DOMAIN, dkim_selector="news1" if key else None,
                          dkim_key=key[0] if key else None, **kwargs)  # type: ignore[arg-type]
    return {f.check: f for f in report.findings}


def test_a_healthy_domain_passes_every_check_through_the_cli(project: Path, key: tuple[Path, str]) -> None:
    (project / "var").mkdir()
    os.link(key[0], project / "var" / "news1.pem")
    config = project / "newsletter.toml"
    config.write_text(config.read_text() + '\ndkim_selector = "news1"\ndkim_key = "var/news1.pem"\n')
    with dns_server(healthy_zone(key[1])) as (address, served):
        result = cli(project, "doctor", "--resolver", address)
        as_json = cli(project, "doctor", "--resolver", address, "--json")
        # The resolver can also come from the settings.
        config.write_text(config.read_text() + f'\ndns_resolver = "{address}"\n')
        from_settings = cli(project, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("OK  ") == 4 and "All checks pass." in result.stdout
    assert f"The key published at {KEY_NAME} matches" in result.stdout
    assert {(DOMAIN, "TXT"), (KEY_NAME, "TXT"), (f"_dmarc.{DOMAIN}", "TXT"), (DOMAIN, "MX"),
            ("_spf.provider.example", "TXT")} <= set(served.queries)
    data = json.loads(as_json.stdout)
    assert data["ok"] is True and [f["status"] for f in data["findings"]] == [OK] * 4
    assert from_settings.returncode == 0 and address in from_settings.stdout


def test_an_empty_domain_gets_every_record_to_publish(project: Path, key: tuple[Path, str]) -> None:
    (project / "var").mkdir()
    os.link(key[0], project / "var" / "news1.pem")
    config = project / "newsletter.toml"
    config.write_text(config.read_text() + '\ndkim_selector = "news1"\ndkim_key = "var/news1.pem"\n')
    with dns_server({DOMAIN: [("A", "192.0.2.10")]}) as (address, _):
        result = cli(project, "doctor", "--resolver", address, "--json")
        text = cli(project, "doctor", "--resolver", address)
    assert result.returncode == 1 and text.returncode == 1
    findings = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert findings["SPF"]["status"] == PROBLEM and findings["SPF"]["publish"]["value"].startswith("v=spf1 ")
    assert findings["DKIM"]["status"] == PROBLEM
    assert findings["DKIM"]["publish"] == {"name": KEY_NAME, "type": "TXT", "value": key[1]}
    assert findings["DMARC"]["status"] == PROBLEM
    assert findings["DMARC"]["publish"]["name"] == f"_dmarc.{DOMAIN}"
    assert findings["DMARC"]["publish"]["value"].startswith("v=DMARC1; p=none")
    assert findings["bounce MX"]["status"] == WARNING, "an address record is a fallback, not a mailbox"
    assert "4 problem" not in text.stdout and "3 problem(s) to fix" in text.stdout
    assert f"publish: {KEY_NAME}  TXT  {key[1]}" in text.stdout


def test_spf_mistakes(key: tuple[Path, str]) -> None:
    zone = healthy_zone(key[1])
    zone[DOMAIN] = [("TXT", "v=spf1 include:_spf.provider.example ~all"), ("TXT", "v=spf1 mx -all")]
    spf = run(zone, key)["SPF"]
    assert spf.status == PROBLEM and "2 SPF records" in spf.message
    assert spf.publish and spf.publish.value == "v=spf1 include:_spf.provider.example mx ~all"

    zone[DOMAIN] = [("TXT", "v=spf1 mx +all")]
    spf = run(zone, key)["SPF"]
    assert spf.status == PROBLEM and "any server in the world" in spf.message
    assert spf.publish and spf.publish.value == "v=spf1 mx ~all"

    # Eleven includes, each pulling in the next: receivers stop at ten lookups.
    zone[DOMAIN] = [("TXT", "v=spf1 include:s0.provider.example ~all")]
    for i in range(11):
        zone[f"s{i}.provider.example"] = [("TXT", f"v=spf1 include:s{i + 1}.provider.example ~all")]
    spf = run(zone, key)["SPF"]
    assert spf.status == PROBLEM and "more than 10 DNS lookups" in spf.message

    zone[DOMAIN] = [("TXT", "v=spf1 include:_spf.provider.example ?all")]
    assert run(zone, key)["SPF"].status == WARNING


def test_spf_is_checked_on_the_bounce_domain(key: tuple[Path, str]) -> None:
    zone = healthy_zone(key[1])
    zone["bounces.other.example"] = [("TXT", "v=spf1 include:_spf.provider.example ~all"),
                                     ("MX", "10 mx.other.example")]
    findings = run(zone, key, bounce_domain="bounces.other.example")
    assert findings["SPF"].status == WARNING and "relies on DKIM alone" in findings["SPF"].message
    assert findings["bounce MX"].status == OK and "mx.other.example" in findings["bounce MX"].message


def test_dkim_key_that_does_not_match(key: tuple[Path, str], tmp_path: Path) -> None:
    other = generate_key(tmp_path / "other.pem", selector="news1", domain=DOMAIN)
    zone = healthy_zone(other.record)
    dkim = run(zone, key)["DKIM"]
    assert dkim.status == PROBLEM and "not the public half" in dkim.message
    assert dkim.publish and dkim.publish.value == key[1]
    zone[KEY_NAME] = [("TXT", "v=DKIM1; k=rsa; p=")]
    assert "revoked" in run(zone, key)["DKIM"].message
    # Whitespace a DNS panel inserts inside p= does not matter (RFC 6376 §3.6.1).
    spaced = key[1].replace("p=", "p= ").replace("A", "A ", 3)
    zone[KEY_NAME] = [("TXT", spaced)]
    assert run(zone, key)["DKIM"].status == OK
    no_signing = run(zone, None)["DKIM"]
    assert no_signing.status == WARNING and "dkim keygen" in no_signing.message


def test_dmarc_policies(key: tuple[Path, str]) -> None:
    zone = healthy_zone(key[1])
    zone[f"_dmarc.{DOMAIN}"] = [("TXT", "v=DMARC1; p=none")]
    dmarc = run(zone, key)["DMARC"]
    assert dmarc.status == WARNING and "p=quarantine" in dmarc.message
    del zone[f"_dmarc.{DOMAIN}"]
    zone["_dmarc.example.org"] = [("TXT", "v=DMARC1; p=reject")]
    dmarc = run(zone, key)["DMARC"]
    assert dmarc.status == OK and "inherited from example.org" in dmarc.message
    zone["_dmarc.example.org"] = [("TXT", "v=DMARC1; p=reject; sp=none")]
    assert run(zone, key)["DMARC"].status == WARNING, "a subdomain follows sp= of the parent"
    zone[f"_dmarc.{DOMAIN}"] = [("TXT", "v=DMARC1; p=reject"), ("TXT", "v=DMARC1; p=none")]
    assert run(zone, key)["DMARC"].status == PROBLEM


def test_bounce_domain_mx(key: tuple[Path, str]) -> None:
    zone = healthy_zone(key[1])
    zone[DOMAIN] = [r for r in zone[DOMAIN] if r[0] != "MX"] + [("MX", "0 .")]
    mx = run(zone, key)["bounce MX"]
    assert mx.status == PROBLEM and "null MX" in mx.message and mx.publish and mx.publish.type == "MX"
    findings = run(zone, key, bounce_domain="nowhere.example")
    assert findings["bounce MX"].status == PROBLEM and "no address" in findings["bounce MX"].message


def test_an_unreachable_resolver_is_one_clear_error() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(DnsUnreachable, match=rf"no answer from 127.0.0.1:{port} .* within 0.5 s"):
        diagnose(DnsLookup(f"127.0.0.1:{port}", timeout=0.5), domain=DOMAIN)
    assert time.monotonic() - started < 5


def test_bad_resolver_setting_names_the_key(project: Path) -> None:
    config = project / "newsletter.toml"
    config.write_text(config.read_text() + '\ndns_resolver = "dns.example.org"\n')
    with pytest.raises(ConfigError, match="dns_resolver: 'dns.example.org' must be an IP address"):
        load_settings(config, env={})
    result = cli(project, "doctor")
    assert result.returncode == 1 and "dns_resolver" in result.stderr and "Traceback" not in result.stderr
    config.write_text(config.read_text().replace('dns_resolver = "dns.example.org"', ""))
    for bad in ("dns.example.org", "127.0.0.1:99999", "127.0.0.1:x"):
        result = cli(project, "doctor", "--resolver", bad)
        assert result.returncode == 2 and "--resolver" in result.stderr and "Traceback" not in result.stderr
