"""A real authoritative DNS server on 127.0.0.1 (dnslib, UDP and TCP) serving a zone the test writes.

Also runnable as a script (`python tests/dns_server.py ZONE.json PORT`), which the opendkim test
starts inside a private network namespace on port 53.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager

from dnslib import MX, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer

__all__ = ["Zone", "dns_server", "free_port"]

#: name -> list of (type, value); MX values are "PREF HOST", TXT values are strings (split at 255).
Zone = dict[str, list[tuple[str, str]]]
#: How often the server threads look for a stop request: the longest a stop waits.
_POLL = 0.02


def _txt(value: str) -> TXT:
    data = value.encode("utf-8")
    return TXT([data[i:i + 255] for i in range(0, len(data), 255)] or [b""])


class ZoneResolver(BaseResolver):
    """Answers from the zone; an unknown name is NXDOMAIN, a known name without that type is NODATA."""

    def __init__(self, zone: Zone) -> None:
        self.zone = {name.lower().rstrip("."): records for name, records in zone.items()}
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        self.queries.append((name, qtype))
        if name not in self.zone:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rtype, value in self.zone[name]:
            if rtype != qtype:
                continue
            if rtype == "TXT":
                rdata = _txt(value)
            elif rtype == "MX":
                pref, host = value.split()
                rdata = MX(host, int(pref))
            elif rtype == "A":
                rdata = A(value)
            else:
                raise ValueError(f"unsupported record type {rtype}")
            reply.add_answer(RR(request.q.qname, QTYPE.reverse[rtype], rdata=rdata, ttl=60))
        return reply


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for the test DNS server")


@contextmanager
def dns_server(zone: Zone, *, port: int | None = None) -> Iterator[tuple[str, ZoneResolver]]:
    """Serve `zone` on 127.0.0.1; yields ("127.0.0.1:PORT", resolver) and stops both servers after."""
    port = port or free_port()
    resolver = ZoneResolver(zone)
    servers = [DNSServer(resolver, address="127.0.0.1", port=port, tcp=tcp, logger=_Quiet()) for tcp in (False, True)]
    # Not DNSServer.start_thread: socketserver's default poll interval (0.5 s) is how long each stop waits.
    threads = [threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": _POLL}, daemon=True)
               for server in servers]
    for thread in threads:
        thread.start()
    try:
        yield f"127.0.0.1:{port}", resolver
    finally:
        for server in servers:
            server.stop()
            server.server.server_close()
        for thread in threads:
            thread.join()


class _Quiet:
    """dnslib logs every request to stdout by default; the tests read the resolver's query list instead."""

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None


if __name__ == "__main__":
    import signal

    with open(sys.argv[1], encoding="utf-8") as fh:
        loaded = {name: [tuple(r) for r in records] for name, records in json.load(fh).items()}
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with dns_server(loaded, port=int(sys.argv[2])):  # type: ignore[arg-type]
        print("ready", flush=True)
        done.wait()
