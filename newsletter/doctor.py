"""Doctor: the sender's DNS (SPF, DKIM, DMARC, bounce MX) -> findings in plain words, each with the record to publish."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.resolver

from .dkim import load_private_key, parse_record, public_record, record_name
from .errors import NewsletterError
from .settings import resolver_address

__all__ = ["Record", "Finding", "DoctorReport", "DnsLookup", "DnsUnreachable", "diagnose", "OK", "WARNING",
           "PROBLEM"]

OK, WARNING, PROBLEM = "ok", "warning", "problem"
_SPF_LOOKUP_LIMIT = 10  # RFC 7208 §4.6.4: receivers give up (permerror) past ten DNS-querying terms
_SPF_LOOKUP_TERMS = re.compile(r"^[+?~-]?(include:|a\b|a:|a/|mx\b|mx:|mx/|ptr\b|ptr:|exists:|redirect=)", re.I)


class DnsUnreachable(NewsletterError):
    """The resolver did not answer (timeout, refused): nothing can be concluded about the records."""


@dataclass(frozen=True)
class Record:
    """A DNS record someone should publish."""

    name: str
    type: str
    value: str


@dataclass(frozen=True)
class Finding:
    check: str  # SPF | DKIM | DMARC | bounce MX
    status: str  # ok | warning | problem
    message: str  # plain words: what is wrong and what it means for the mail
    publish: Record | None = None


@dataclass(frozen=True)
class DoctorReport:
    domain: str
    bounce_domain: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(f.status != PROBLEM for f in self.findings)


class DnsLookup:
    """TXT and MX answers from one resolver (an `IP[:PORT]`, or the system's when None)."""

    def __init__(self, address: str | None = None, *, timeout: float = 5.0) -> None:
        if address:
            host, port = resolver_address(address)
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [host]
            self.resolver.port = port
        else:
            self.resolver = dns.resolver.Resolver()
        self.resolver.lifetime = timeout
        self.where = address or "the system resolver"

    def _query(self, name: str, rtype: str) -> dns.resolver.Answer | None:
        """The answer, or None when the name or the type does not exist."""
        try:
            return self.resolver.resolve(name, rtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.exception.Timeout:
            raise DnsUnreachable(f"no answer from {self.where} for {name} ({rtype}) within "
                                 f"{self.resolver.lifetime:g} s; is that DNS server running? "
                                 "(set it with dns_resolver or --resolver)") from None
        except dns.resolver.NoNameservers:
            raise DnsUnreachable(f"{self.where} refused or failed to look up {name} ({rtype})") from None

    def txt(self, name: str) -> list[str]:
        answer = self._query(name, "TXT")
        if answer is None or answer.rrset is None:
            return []
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer.rrset]

    def mx(self, name: str) -> list[tuple[int, str]]:
        answer = self._query(name, "MX")
        if answer is None or answer.rrset is None:
            return []
        return sorted((r.preference, r.exchange.to_text(omit_final_dot=True)) for r in answer.rrset)

    def exists(self, name: str) -> bool:
        """Does the name have an address (A or AAAA)?"""
        for rtype in ("A", "AAAA"):
            answer = self._query(name, rtype)
            if answer is not None and answer.rrset is not None:
                return True
        return False


def _organisation(domain: str) -> str:
    """The registrable domain, approximated as the last two labels (no public-suffix list: a hint, not a verdict)."""
    return ".".join(domain.rsplit(".", 2)[-2:])


# --- SPF ---------------------------------------------------------------------------------------------

def _spf_records(dns_: DnsLookup, domain: str) -> list[str]:
    return [t for t in dns_.txt(domain) if re.match(r"v=spf1(\s|$)", t, re.I)]


def _spf_lookups(dns_: DnsLookup, record: str, seen: set[str]) -> int:
    """DNS-querying terms in the record and every include/redirect it pulls in (stops past the limit)."""
    count = 0
    for term in record.split()[1:]:
        if not _SPF_LOOKUP_TERMS.match(term):
            continue
        count += 1
        bare = term.lstrip("+?~-").lower()
        target = term.split(":", 1)[1] if bare.startswith("include:") else (
            term.split("=", 1)[1] if bare.startswith("redirect=") else None)
        if target and target not in seen and count <= _SPF_LOOKUP_LIMIT:
            seen.add(target)
            for nested in _spf_records(dns_, target)[:1]:
                count += _spf_lookups(dns_, nested, seen)
        if count > _SPF_LOOKUP_LIMIT:
            break
    return count


def check_spf(dns_: DnsLookup, domain: str, from_domain: str) -> Finding:
    records = _spf_records(dns_, domain)
    template = Record(domain, "TXT", "v=spf1 include:<your mail provider's SPF domain> ~all")
    if not records:
        return Finding("SPF", PROBLEM,
                       f"{domain} has no SPF record, so receiving servers cannot tell which servers may send its "
                       "mail, and many file it as spam. Publish one TXT record; your mail provider's help pages give "
                       "the exact include (for example include:amazonses.com or include:spf.mtasv.net).", template)
    if len(records) > 1:
        terms: list[str] = []
        for rec in records:
            terms += [t for t in rec.split()[1:] if not t.lower().lstrip("+?~-").startswith("all") and t not in terms]
        merged = " ".join(["v=spf1", *terms, "~all"])
        return Finding("SPF", PROBLEM,
                       f"{domain} has {len(records)} SPF records; receivers treat that as an error and ignore all of "
                       "them (RFC 7208 §4.5). Replace them with one record that lists every sender:",
                       Record(domain, "TXT", merged))
    record = records[0]
    terms = [t.lower() for t in record.split()[1:]]
    last = terms[-1] if terms else ""
    if last in ("all", "+all"):
        return Finding("SPF", PROBLEM,
                       f"The SPF record of {domain} ends in '{last}', which lets any server in the world send as "
                       "you. End it in ~all (or -all) instead:",
                       Record(domain, "TXT", " ".join(["v=spf1", *record.split()[1:-1], "~all"])))
    lookups = _spf_lookups(dns_, record, set())
    if lookups > _SPF_LOOKUP_LIMIT:
        return Finding("SPF", PROBLEM,
                       f"The SPF record of {domain} needs more than {_SPF_LOOKUP_LIMIT} DNS lookups (includes "
                       "included by includes); receivers stop there and treat it as an error. Remove providers you "
                       "no longer use, or ask your provider for a flattened include.")
    notes = []
    if last == "?all" or not any(t.lstrip("+?~-").startswith(("all", "redirect=")) for t in terms):
        notes.append("it does not say what to do with other servers (end it in ~all)")
    if _organisation(domain) != _organisation(from_domain):
        notes.append(f"bounces go to {domain}, which is not part of {from_domain}, so DMARC cannot count SPF and "
                     "relies on DKIM alone")
    if notes:
        return Finding("SPF", WARNING, f"{domain} has an SPF record ({record}), but " + "; and ".join(notes) + ".")
    return Finding("SPF", OK, f"{domain} publishes one SPF record ({record}) with {lookups} DNS lookup(s).")


# --- DKIM --------------------------------------------------------------------------------------------

def check_dkim(dns_: DnsLookup, domain: str, selector: str | None, key_path: Path | None) -> Finding:
    if not selector or key_path is None:
        return Finding("DKIM", WARNING,
                       "newsletter does not sign mail itself (no dkim_selector / dkim_key in the settings). That is "
                       "fine if your mail provider signs with your domain: a received copy then shows "
                       f"'dkim=pass header.d={domain}'. Otherwise run `newsletter dkim keygen --selector news1`.")
    expected = public_record(load_private_key(key_path))
    name = record_name(selector, domain)
    wanted = Record(name, "TXT", expected)
    records = [t for t in dns_.txt(name) if "p=" in t]
    if not records:
        return Finding("DKIM", PROBLEM,
                       f"No DKIM key is published at {name}, so every message newsletter signs fails DKIM and "
                       "counts as unauthenticated. Publish this TXT record (the output of `newsletter dkim keygen`):",
                       wanted)
    if len(records) > 1:
        return Finding("DKIM", PROBLEM, f"{name} has {len(records)} key records; receivers may pick either. Keep "
                                        "only this one:", wanted)
    tags = parse_record(records[0])
    if tags.get("k", "rsa").lower() != "rsa":
        return Finding("DKIM", PROBLEM, f"The key at {name} is of type {tags['k']}, but newsletter signs with RSA. "
                                        "Publish:", wanted)
    if not tags.get("p"):
        return Finding("DKIM", PROBLEM, f"The key at {name} is revoked (empty p=). Publish the current key:", wanted)
    if tags["p"] != parse_record(expected)["p"]:
        return Finding("DKIM", PROBLEM,
                       f"The key published at {name} is not the public half of {key_path}: receivers will reject "
                       "every signature. Replace the record with:", wanted)
    return Finding("DKIM", OK, f"The key published at {name} matches {key_path}.")


# --- DMARC -------------------------------------------------------------------------------------------

def check_dmarc(dns_: DnsLookup, domain: str) -> Finding:
    suggestion = Record(f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}")
    where, records = domain, []
    for candidate in (domain, _organisation(domain)):
        where = candidate
        records = [t for t in dns_.txt(f"_dmarc.{candidate}") if re.match(r"v=DMARC1\s*(;|$)", t, re.I)]
        if records:
            break
    if not records:
        return Finding("DMARC", PROBLEM,
                       f"{domain} has no DMARC record. Gmail and Yahoo require one from anyone sending in bulk "
                       "(since 2024). Start with a policy that only asks for reports (p=none); rua is a mailbox you "
                       "read (or leave rua out):", suggestion)
    if len(records) > 1:
        return Finding("DMARC", PROBLEM, f"_dmarc.{where} has {len(records)} DMARC records; receivers ignore them "
                                         "all. Keep one:", Record(f"_dmarc.{where}", "TXT", records[0]))
    tags = {k.lower(): v for k, v in parse_record(records[0]).items()}
    policy = (tags.get("sp") if where != domain and "sp" in tags else tags.get("p", "")).lower()
    if policy not in ("none", "quarantine", "reject"):
        return Finding("DMARC", PROBLEM, f"The DMARC record at _dmarc.{where} has no valid policy (p=none, "
                                         "quarantine or reject), so receivers ignore it:", suggestion)
    inherited = f" (inherited from {where})" if where != domain else ""
    if policy == "none":
        return Finding("DMARC", WARNING,
                       f"DMARC is published{inherited} but only monitors (p=none): it satisfies Gmail and Yahoo, and "
                       "protects nobody from forgeries. After a few weeks of reports that show only your own mail "
                       "passing, change it to p=quarantine.")
    return Finding("DMARC", OK, f"DMARC policy p={policy}{inherited}.")


# --- bounce MX ---------------------------------------------------------------------------------------

def check_bounce_mx(dns_: DnsLookup, bounce_domain: str) -> Finding:
    hosts = dns_.mx(bounce_domain)
    if any(host in ("", ".") for _, host in hosts):
        return Finding("bounce MX", PROBLEM,
                       f"{bounce_domain} publishes a 'null MX': it refuses all mail, so bounce messages are lost and "
                       "dead addresses keep being mailed. Point it at the mailbox `newsletter bounces fetch` reads:",
                       Record(bounce_domain, "MX", "10 <your mail server's host name>"))
    if hosts:
        return Finding("bounce MX", OK, f"Bounces to {bounce_domain} go to " + ", ".join(h for _, h in hosts) + ".")
    reachable = dns_.exists(bounce_domain)
    return Finding("bounce MX", WARNING if reachable else PROBLEM,
                   (f"{bounce_domain} has no MX record; servers fall back to its address record, which rarely "
                    "accepts mail." if reachable else f"{bounce_domain} has no MX record and no address: bounce "
                    "messages cannot be delivered anywhere.") + " Publish an MX that points at the bounce mailbox:",
                   Record(bounce_domain, "MX", "10 <your mail server's host name>"))


def diagnose(dns_: DnsLookup, *, domain: str, bounce_domain: str | None = None, dkim_selector: str | None = None,
             dkim_key: Path | None = None, dkim_domain: str | None = None) -> DoctorReport:
    """Run every check; `bounce_domain` (the envelope sender's domain) defaults to the sender's domain."""
    domain = domain.lower().rstrip(".")
    bounce = (bounce_domain or domain).lower().rstrip(".")
    findings = (check_spf(dns_, bounce, domain),
                check_dkim(dns_, (dkim_domain or domain).lower(), dkim_selector, dkim_key),
                check_dmarc(dns_, domain),
                check_bounce_mx(dns_, bounce))
    return DoctorReport(domain=domain, bounce_domain=bounce, findings=findings)
