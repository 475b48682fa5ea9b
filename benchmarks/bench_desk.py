"""Desk: save-to-preview time for a 10-summary issue (warm process) and the edit page's weight."""

from __future__ import annotations

import re
import statistics
import time
from typing import Any

from .project import compose_and_build, make_project, settings_for, temp_dir
from .report import Row, info, median, ratio_row

__all__ = ["run"]

SECTION = "desk"
EDITS = 50


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def run(*, quick: bool, out: Any = print) -> list[Row]:
    import dataclasses

    import httpx

    from newsletter.jobs import accounts, desk as desk_jobs
    from newsletter.edit import IssueEdit
    from newsletter.jobs.issues import build
    from newsletter.serve import create_app
    from tests.desk_support import csrf_for, field_value, running, sign_in

    edits = 20 if quick else EDITS
    rows: list[Row] = []
    with temp_dir("desk-") as work:
        root = make_project(work / "site")
        folder = compose_and_build(root, limit=10, approve=False)
        settings = dataclasses.replace(settings_for(root), public_base_url="http://127.0.0.1/newsletter")
        editor = accounts.add(settings, "bench@example.org", name="Bench", role="editor",
                              password="a long benchmark password")
        out(f"  desk: {edits} edits of a 10-summary issue, save + rebuild, warm ...")
        opened = desk_jobs.open_issue(settings, folder.name)
        desk_jobs.preview_build(settings, folder.name)  # warm: templates compiled, imports done
        server_side, builds = [], []
        for n in range(edits):
            current = desk_jobs.open_issue(settings, folder.name)
            edit = dataclasses.replace(IssueEdit.of(current.issue), intro=f"Edit number {n}. " + opened.issue.intro)
            start = time.perf_counter()
            desk_jobs.save(settings, editor, folder.name, edit, current.version)
            desk_jobs.preview_build(settings, folder.name)
            server_side.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            build(settings, folder)
            builds.append((time.perf_counter() - start) * 1000)
        rows.append(ratio_row(
            SECTION, "save-to-preview on the server, p95 (save issue.toml + rebuild)", _p95(server_side), "ms",
            median(builds), "a warm `build` of the same issue, median", goal="p95 <= 100 ms",
            check=lambda figure, _ratio: figure <= 100.0,
            note=f"median {median(server_side):.1f} ms over {edits} edits; 10 summaries",
            samples={"server_ms": [round(x, 1) for x in server_side]}))

        out("  desk: the same over HTTP (real Uvicorn: POST the form, GET the edit page that rebuilds, GET the preview) ...")
        http_ms: list[float] = []
        with running(create_app(settings)) as base, httpx.Client(base_url=base, timeout=30) as client:
            sign_in(client, ("bench@example.org", "", "", "a long benchmark password"))
            path = f"/desk/issues/{folder.name}"
            page = client.get(path).text
            weight = len(page.encode()) + sum(len(client.get(f"/desk/static/{name}").content)
                                              for name in ("desk.css", "desk.js"))
            for n in range(edits):
                data: dict[str, object] = {k: field_value(page, k) for k in ("version", "subject", "preheader")}
                data["csrf"] = csrf_for(page, path)
                data["sid"] = re.findall(r'name="sid" value="([^"]+)"', page)
                data["intro"] = f"Over HTTP, edit {n}."
                data["op"] = "save"
                start = time.perf_counter()
                saved = client.post(path, data=data)
                page = client.get(saved.headers["location"]).text
                client.get(f"{path}/preview")
                http_ms.append((time.perf_counter() - start) * 1000)
        rows.append(info(SECTION, "save-to-preview over HTTP, p95", _p95(http_ms), "ms",
                         note=f"median {median(http_ms):.1f} ms; what an editor waits for after pressing Save"))
        rows.append(ratio_row(SECTION, "edit page weight without the preview (HTML + CSS + JS)", weight / 1024, "KB",
                              None, "", goal="<= 50 KB", check=lambda figure, _r: figure <= 50.0,
                              note="10 summaries; the preview is the email, loaded in its frame"))
    return rows
