"""The sender-authentication edge: `newsletter dkim keygen` and `newsletter doctor`, printing what they found.

Registered by cli.py (`for c in COMMANDS: cli.add_command(c)`); the commands get cli's `Context` as
the click object (`pass_obj`), so this module does not import cli at load time.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

__all__ = ["COMMANDS", "dkim_group", "doctor_command"]


@click.group(name="dkim")
def dkim_group() -> None:
    """DKIM signing keys (for senders whose mail server does not sign for them)."""


@dkim_group.command(name="keygen")
@click.option("--selector", required=True, help="A name for this key, e.g. news2026 (a new name for each new key).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the private key (default: var/dkim/SELECTOR.pem in the project).")
@click.option("--domain", help="The signing domain (default: dkim_domain, else the sender's domain).")
@click.option("--bits", type=click.Choice(["2048", "3072", "4096"]), default="2048", show_default=True,
              help="Key size; 2048 is what mailbox providers expect and fits in one DNS record.")
@click.option("--force", is_flag=True, help="Replace an existing key file.")
@click.pass_obj
def keygen(obj: Any, selector: str, out: Path | None, domain: str | None, bits: str, force: bool) -> None:
    """Write a private key (readable only by you) and print the DNS record to publish."""
    from .dkim import generate_key, zone_line
    from .settings import is_dns_name

    settings = obj.settings
    if not is_dns_name(selector):
        raise click.BadParameter(f"{selector!r} is not a DNS name (letters, digits, hyphens)", param_hint="--selector")
    domain = (domain or settings.dkim_domain or settings.sender_email.rpartition("@")[2]).lower()
    if not is_dns_name(domain):
        raise click.BadParameter(f"{domain!r} is not a domain name", param_hint="--domain")
    path = out or Path("var") / "dkim" / f"{selector}.pem"
    made = generate_key(settings.path(path), selector=selector, domain=domain, bits=int(bits), force=force)
    click.echo(f"Wrote a {bits}-bit private key to {path} (readable only by you: never share or commit it).\n")
    click.echo("Publish this TXT record with your DNS host:")
    click.echo(f"  name:  {made.name}")
    click.echo(f"  value: {made.record}\n")
    click.echo("As a zone-file line:")
    click.echo(f"  {zone_line(selector, domain, made.record)}\n")
    click.echo("Then add to newsletter.toml:")
    click.echo(f'  dkim_selector = "{selector}"')
    click.echo(f'  dkim_key = "{path}"')
    click.echo("and run `newsletter doctor` once the record is live (DNS changes can take an hour).")


_LABELS = {"ok": "OK     ", "warning": "WARNING", "problem": "PROBLEM"}


@click.command(name="doctor")
@click.option("--resolver", metavar="IP[:PORT]",
              help="Ask this DNS server (default: dns_resolver from the settings, else the system's resolver).")
@click.option("--bounce-domain", help="The domain bounces go to (default: verp_address's domain, else the "
                                      "sender's domain).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_obj
def doctor_command(obj: Any, resolver: str | None, bounce_domain: str | None, as_json: bool) -> None:
    """Check the sender domain's SPF, DKIM, DMARC and bounce MX records; explain each gap."""
    from .doctor import DnsLookup, diagnose

    settings = obj.settings
    address = resolver or settings.dns_resolver
    try:
        lookup = DnsLookup(address)
    except ValueError:
        raise click.BadParameter(f"{address!r} is not an IP address with an optional :PORT",
                                 param_hint="--resolver") from None
    key = settings.path(settings.dkim_key) if settings.dkim_key is not None else None
    verp = getattr(settings, "verp_address", None)  # the envelope sender's address when VERP is on
    report = diagnose(lookup, domain=settings.sender_email.rpartition("@")[2],
                      bounce_domain=bounce_domain or (verp.rpartition("@")[2] if verp else None),
                      dkim_selector=settings.dkim_selector, dkim_key=key, dkim_domain=settings.dkim_domain)
    if as_json:
        click.echo(json.dumps({"domain": report.domain, "bounce_domain": report.bounce_domain, "ok": report.ok,
                               "findings": [asdict(f) for f in report.findings]}, indent=2))
    else:
        click.echo(f"Checking {report.domain} (bounces to {report.bounce_domain}) with {lookup.where}:\n")
        for finding in report.findings:
            click.echo(f"{_LABELS[finding.status]}  {finding.check}: {finding.message}")
            if finding.publish:
                click.echo(f"           publish: {finding.publish.name}  {finding.publish.type}  {finding.publish.value}")
        problems = sum(f.status == "problem" for f in report.findings)
        click.echo("\nAll checks pass." if report.ok else f"\n{problems} problem(s) to fix; see docs/deliverability.md.")
    if not report.ok:
        sys.exit(1)


COMMANDS = [dkim_group, doctor_command]
