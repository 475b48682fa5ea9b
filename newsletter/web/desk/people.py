"""Desk pages for subscribers (counts, search, add, CSV import and export, always paged) and the audit log."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ...jobs.accounts import EditorRow
from ...store import Connection
from ...store import desk as desk_store, subscribers
from ...errors import SubscriberError
from ..pages import PageError
from .core import DESK_TEMPLATES, UPLOAD_LIMIT, DeskCore

__all__ = ["PeoplePages", "PAGE_SIZE", "STATIC_FILES"]

PAGE_SIZE = 50
STATIC_FILES = {"desk.css": "text/css; charset=utf-8", "desk.js": "text/javascript; charset=utf-8"}


def _page(raw: str) -> int:
    return int(raw) if raw.isdigit() and 0 < int(raw) < 1_000_000 else 1


class PeoplePages:
    def __init__(self, core: DeskCore) -> None:
        self.core = core

    def routes(self) -> list[Route]:
        g = self.core.signed_in
        return [
            Route("/desk/subscribers", g(self.list), name="desk_subscribers"),
            Route("/desk/subscribers/add", g(self.add), methods=["POST"], name="desk_subscriber_add"),
            Route("/desk/subscribers/import", g(self.import_csv), methods=["POST"], name="desk_subscriber_import"),
            Route("/desk/subscribers/export.csv", g(self.export), name="desk_subscriber_export"),
            Route("/desk/audit", g(self.audit), name="desk_audit"),
            Route("/desk/static/{name}", self.static, name="desk_static"),
        ]

    async def static(self, request: Request) -> Response:
        """The desk's own stylesheet and script: public, like any site's CSS (nothing in them is private)."""
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            raise PageError(404, "Page not found", "There is nothing at this address.")
        return FileResponse(DESK_TEMPLATES / "static" / name, media_type=STATIC_FILES[name],
                            headers={"Cache-Control": "no-cache"})

    def _counts(self, conn: Connection) -> dict[str, int]:
        return {status: subscribers.count(conn, status) for status in subscribers.STATUSES}

    async def list(self, request: Request, editor: EditorRow, *, messages: dict[str, object] | None = None,
                   status: int = 200) -> Response:
        q = request.query_params.get("q", "").strip()[:200]
        state = request.query_params.get("status", "")
        state = state if state in subscribers.STATUSES else ""
        page = _page(request.query_params.get("page", "1"))
        counts = await self.core.db(self._counts)
        total, rows = await self.core.db(desk_store.search_subscribers, q, status=state or None, limit=PAGE_SIZE,
                                         offset=(page - 1) * PAGE_SIZE)
        pages = max(1, -(-total // PAGE_SIZE))
        return self.core.render(request, "subscribers.html", {
            "q": q, "state": state, "page": page, "pages": pages, "total": total, "rows": rows, "counts": counts,
            "statuses": subscribers.STATUSES, "page_size": PAGE_SIZE, **(messages or {}),
        }, editor=editor, status=status)

    async def add(self, request: Request, editor: EditorRow) -> Response:
        form = await self.core.form(request, "subscriber_add")
        email, name = form.get("email"), form.get("name")
        try:
            sub = await self.core.db(subscribers.add, email, name)
        except SubscriberError as exc:
            message = str(exc)
            if "not a valid email address" in message:
                message = "This is not a valid email address. Please check it for typing mistakes."
            return await self.list(request, editor, messages={"add_error": message, "add_email": email,
                                                             "add_name": name}, status=400)
        await self.core.audit(editor, "subscriber.add", detail=f"{sub.email}: {sub.status}")
        return await self.list(request, editor, messages={"add_done": f"{sub.email} is {sub.status}."})

    async def import_csv(self, request: Request, editor: EditorRow) -> Response:
        form = await self.core.form(request, "subscriber_import", limit=UPLOAD_LIMIT)
        upload = form.files.get("file")
        if upload is None or not upload[1].strip():
            return await self.list(request, editor, messages={"import_error": "Choose a CSV file to import."},
                                   status=400)
        name, data = upload
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload.csv"
            path.write_bytes(data)
            try:
                report = await self.core.db(subscribers.import_csv, path)
            except SubscriberError as exc:
                return await self.list(request, editor, status=400, messages={
                    "import_error": str(exc).replace(str(path), name or "the file")})
        await self.core.audit(editor, "subscriber.import",
                              detail=f"{name}: {report.added} added, {len(report.errors)} rejected")
        return await self.list(request, editor, messages={"import_report": report, "import_name": name},
                               status=200)

    async def export(self, request: Request, editor: EditorRow) -> Response:
        def build(conn: Connection) -> str:
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(["email", "name", "status"])
            for rows in desk_store.subscriber_pages(conn):
                # A leading = + - @ would run as a formula in a spreadsheet; a quote mark keeps it text.
                writer.writerows([[c if not c[:1] in ("=", "+", "-", "@") else "'" + c for c in row] for row in rows])
            return out.getvalue()

        text = await self.core.db(build)
        await self.core.audit(editor, "subscriber.export")
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="subscribers.csv"'})

    async def audit(self, request: Request, editor: EditorRow) -> Response:
        page = _page(request.query_params.get("page", "1"))
        entries = await self.core.db(desk_store.audit_entries, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
        return self.core.render(request, "audit.html", {
            "entries": entries[:PAGE_SIZE], "page": page, "more": len(entries) > PAGE_SIZE, "tz": self.core.settings.tz,
        }, editor=editor)
