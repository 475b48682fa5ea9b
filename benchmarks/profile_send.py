"""One send to smtp-sink (or a null transport), for profiling.

    py-spy record -o send.svg -- python -m benchmarks.profile_send

Options: --messages N (default 5000), --connections N (default 1), --null (no SMTP: personalise + ledger only),
--cprofile FILE (the main thread under cProfile; worker threads are not seen by cProfile, py-spy sees all).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import time

from .project import (
    compose_and_build,
    import_subscribers,
    make_project,
    settings_for,
    temp_dir,
)
from .tools import postfix_sink, smtp_sink


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile_send")
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--null", action="store_true")
    ap.add_argument("--cprofile", metavar="FILE")
    args = ap.parse_args()
    from newsletter.jobs.delivery import send_full

    from .bench_ledger import register_null

    with temp_dir("profile-") as work:
        root = make_project(work / "site")
        folder = compose_and_build(root, limit=10)
        import_subscribers(root, args.messages)
        settings = settings_for(root)

        def send(url: str) -> None:
            s = dataclasses.replace(settings, transport=url)
            profiler = cProfile.Profile() if args.cprofile else None
            start, cpu = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            report = send_full(s, folder, connections=args.connections)
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.cprofile)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            print(f"{report.sent} sent in {seconds:.2f} s: {report.sent / seconds:.0f} msg/s, "
                  f"{cpu / max(1, report.sent) * 1e6:.0f} us CPU per message (all threads, user + system)")

        if args.null:
            register_null()
            send("null:")
            return
        tool = smtp_sink()
        if not tool.ok:
            raise SystemExit(tool.missing)
        with postfix_sink(tool, work) as (port, _):
            send(f"smtp://127.0.0.1:{port}?starttls=off")


if __name__ == "__main__":
    main()
