"""`python -m benchmarks.pipelining_ab`: the SMTP loop to smtp-sink with and without PIPELINING, alternating."""

from __future__ import annotations

import argparse
import dataclasses
import time

from newsletter.models import Message
from newsletter.transports import open_transport

from .project import temp_dir
from .tools import postfix_sink, smtp_sink

PAD = b"X-Pad: " + b"a" * 70 + b"\r\n"


def _message() -> Message:
    body = b"From: news@example.com\r\nTo: reader1@example.com\r\nSubject: test\r\n\r\n" + b"Hello.\r\n" * 10
    return Message(issue_id="ab", recipient="reader1@example.com", sender="news@example.com",
                   message_id="ab.1@example.com", data=PAD * 680 + body)


def _loop(url: str, message: Message, count: int, *, pipelining: bool) -> tuple[float, float]:
    """(msg/s, CPU µs per message) for `count` sends over one connection."""
    transport = open_transport(url)
    transport.connect()  # type: ignore[attr-defined]
    if not pipelining:  # the same transport, as if the server had not offered it
        transport._smtp.esmtp_features.pop("pipelining", None)  # type: ignore[attr-defined]
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        transport.send(message)
    rate = count / (time.perf_counter() - start)
    per_message = (time.process_time() - cpu) / count * 1e6
    transport.close()
    return rate, per_message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    message = _message()
    sink = smtp_sink()
    if not sink.ok:
        raise SystemExit(sink.missing)
    with temp_dir("ab-") as work, postfix_sink(sink, work) as (port, _):
        url = f"smtp://127.0.0.1:{port}?starttls=off"
        for _ in range(args.pairs):
            for pipelining in (False, True):
                rate, cpu = _loop(url, message, args.messages, pipelining=pipelining)
                print(f"pipelining={pipelining!s:5}  {rate:6.0f} msg/s  {cpu:4.0f} us CPU per message", flush=True)


if __name__ == "__main__":
    main()
