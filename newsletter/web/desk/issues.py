"""Desk pages for issues: the dashboard, a new issue, the edit form with its preview, the plain-text part."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ...check import CheckReport
from ...compose import SUBJECT_LIMIT, TEASER_OVERRIDE_LIMIT
from ...edit import EditConflict, IssueEdit, edit_problems
from ...errors import NewsletterError
from ...jobs import desk as desk_jobs
from ...jobs.accounts import EditorRow
from ...jobs.desk import DeskRefusal
from ...store import desk as desk_store, web_state
from ..pages import PageError
from .core import DeskCore, Form
from .sending import scheduled_sends

__all__ = ["IssuePages", "PREVIEW_FRAME_HEADER", "VIEWS"]

#: Set on the preview response so the desk's header layer gives it the framed-email policy.
PREVIEW_FRAME_HEADER = "x-desk-preview"
VIEWS = {"600-light": (600, "light"), "375-light": (375, "light"), "600-dark": (600, "dark"), "375-dark": (375, "dark")}


def _refused(exc: NewsletterError) -> PageError:
    return PageError(409, "This cannot be done right now", str(exc))


def _dark(html: str) -> str:
    """Force the email's dark-mode rules on, as a phone in dark mode would (an iframe cannot ask for it)."""
    return html.replace("@media (prefers-color-scheme: dark)", "@media all")


class IssuePages:
    def __init__(self, core: DeskCore) -> None:
        self.core = core

    def routes(self) -> list[Route]:
        g = self.core.signed_in
        return [
            Route("/desk/", self.home, name="desk_home"),
            Route("/desk/new", g(self.new), methods=["GET", "POST"], name="desk_new"),
            Route("/desk/issues/{issue_id}", g(self.edit), methods=["GET", "POST"], name="desk_issue"),
            Route("/desk/issues/{issue_id}/preview", g(self.preview), name="desk_preview"),
            Route("/desk/issues/{issue_id}/text", g(self.text), name="desk_text"),
            Route("/desk/issues/{issue_id}/draft", g(self.draft), methods=["POST"], name="desk_draft"),
        ]

    # --- dashboard ------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        if await self.core.db(desk_store.count_editors) == 0:
            return self.core.render(request, "setup.html", {}, editor=None)
        return await self.core.signed_in(self.dashboard)(request)

    async def dashboard(self, request: Request, editor: EditorRow) -> Response:
        rows = await run_in_threadpool(self._overview)
        groups = {state: [r for r in rows if r.state == state]
                  for state in ("draft", "approved", "scheduled", "sending", "sent", "discarded", "broken")}
        tz = self.core.settings.tz
        return self.core.render(request, "dashboard.html", {"groups": groups, "tz": tz}, editor=editor)

    def _overview(self) -> list[desk_jobs.IssueRow]:
        return desk_jobs.overview(self.core.settings, scheduled_sends(self.core.settings))

    # --- new issue ------------------------------------------------------------------------------------

    def _date(self, raw: str) -> dt.date | None:
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            return None

    async def new(self, request: Request, editor: EditorRow) -> Response:
        settings = self.core.settings
        today = dt.datetime.now(settings.tz).date()
        errors: dict[str, str] = {}
        form: Form | None = None
        if request.method == "POST":
            form = await self.core.form(request, "new")
            date = self._date(form.get("date"))
            if date is None:
                errors["date"] = "Write the date as year-month-day, for example 2026-12-01."
            elif form.get("op") == "compose":
                try:
                    issue = await run_in_threadpool(desk_jobs.compose_chosen, settings, editor, date,
                                                    form.getlist("summary"))
                except DeskRefusal as exc:
                    errors["summary" if "Choose" in str(exc) else "date"] = str(exc)
                else:
                    return self.core.redirect(request, "desk_issue", issue_id=issue.id)
        else:
            date = self._date(request.query_params.get("date", "")) or today
        shown = date or today
        found = await run_in_threadpool(desk_jobs.new_issue_candidates, settings, shown)
        free = [c for c in found if c.held_back is None]
        chosen = (set(form.getlist("summary")) if form is not None and form.get("op") == "compose"
                  else {c.summary.id for c in free[: settings.default_limit] if c.summary})
        return self.core.render(request, "new.html", {
            "date": form.get("date") if form is not None else shown.isoformat(), "free": free,
            "held": [c for c in found if c.held_back is not None], "chosen": chosen, "errors": errors,
        }, editor=editor, status=400 if errors else 200)

    # --- edit -----------------------------------------------------------------------------------------

    @staticmethod
    def _edit_from(form: Form) -> IssueEdit:
        ids = [i for i in form.getlist("sid") if i]
        teasers = {i: form.get(f"teaser-{i}").strip() for i in ids if form.get(f"teaser-{i}").strip()}
        return IssueEdit(form.get("subject"), form.get("preheader"), form.get("intro"), tuple(ids), teasers)

    @staticmethod
    def _apply(edit: IssueEdit, op: str, add_id: str) -> IssueEdit:
        """Move up / Move down / Remove / Add, done on the server so they work without JavaScript."""
        ids = list(edit.summary_ids)
        verb, _, sid = op.partition(":")
        if sid in ids:
            i = ids.index(sid)
            if verb == "up" and i > 0:
                ids[i - 1], ids[i] = ids[i], ids[i - 1]
            elif verb == "down" and i < len(ids) - 1:
                ids[i + 1], ids[i] = ids[i], ids[i + 1]
            elif verb == "remove":
                ids.pop(i)
        if verb == "add" and add_id and add_id not in ids:
            ids.append(add_id)
        return IssueEdit(edit.subject, edit.preheader, edit.intro, tuple(ids), dict(edit.teasers))

    async def edit(self, request: Request, editor: EditorRow) -> Response:
        issue_id = request.path_params["issue_id"]
        settings = self.core.settings
        try:
            opened = await run_in_threadpool(desk_jobs.open_issue, settings, issue_id)
        except DeskRefusal:
            raise PageError(404, "Issue not found", "There is no issue with that name. The dashboard lists them all.")
        except NewsletterError as exc:
            raise _refused(exc) from None
        errors: dict[str, str] = {}
        notice = {"saved": "Saved.", "approved": "Approved.", "proof": "The proof is on its way to your inbox.",
                  "scheduled": "Scheduled.", "cancelled": "The scheduled send was cancelled."}.get(
                      request.query_params.get("done", ""), "")
        edit, version, status = IssueEdit.of(opened.issue), opened.version, 200
        if request.method == "POST":
            form = await self.core.form(request, f"edit:{issue_id}")
            edit = self._apply(self._edit_from(form), form.get("op", "save"), form.get("add_id"))
            errors = edit_problems(edit, opened.known)
            version = form.get("version")
            if not errors:
                try:
                    await run_in_threadpool(desk_jobs.save, settings, editor, issue_id, edit, version)
                except EditConflict as exc:
                    errors["conflict"] = str(exc)
                except DeskRefusal as exc:
                    errors["conflict"] = str(exc)
                else:
                    anchor = form.get("op", "save").partition(":")[2]
                    url = self.core.url(request, "desk_issue", issue_id=issue_id) + "?done=saved"
                    return self.core.redirect_to(url + (f"#row-{anchor}" if anchor else "#saved"))
            status = 409 if "conflict" in errors else 400
        return await self._edit_page(request, editor, opened, edit, version, errors, notice, status)

    async def _edit_page(self, request: Request, editor: EditorRow, opened: desk_jobs.Opened, edit: IssueEdit,
                         version: str, errors: dict[str, str], notice: str, status: int) -> Response:
        settings, issue_id = self.core.settings, opened.issue.id
        report: CheckReport | None = None
        build_error = ""
        if not errors:
            try:
                result = await run_in_threadpool(desk_jobs.preview_build, settings, issue_id)
                report = result.report if result is not None else None
            except NewsletterError as exc:
                build_error = str(exc)
        view = request.query_params.get("view", "600-light")
        view = view if view in VIEWS else "600-light"
        rows = [opened.known[i] for i in edit.summary_ids if i in opened.known]
        addable = [s for s in opened.known.values() if s.id not in edit.summary_ids and s.date <= opened.issue.date]
        addable.sort(key=lambda s: (-s.date.toordinal(), s.id))
        who_cannot = await run_in_threadpool(desk_jobs.can_approve, settings, editor, issue_id)
        state = next((r for r in await run_in_threadpool(self._overview) if r.id == issue_id), None)
        return self.core.render(request, "edit.html", {
            "issue": opened.issue, "edit": edit, "rows": rows, "addable": addable[:200], "version": version,
            "errors": errors, "notice": notice, "report": report, "build_error": build_error, "view": view,
            "views": VIEWS, "frozen": opened.frozen, "subject_limit": SUBJECT_LIMIT,
            "teaser_limit": TEASER_OVERRIDE_LIMIT, "cannot_approve": who_cannot, "state": state,
            "timezone": settings.timezone,
        }, editor=editor, status=status)

    # --- preview --------------------------------------------------------------------------------------

    async def preview(self, request: Request, editor: EditorRow) -> Response:
        issue_id = request.path_params["issue_id"]
        html = None
        if request.query_params.get("draft"):
            # In the database, not in this process: the draft may have been posted to another one.
            html = await self.core.db(web_state.draft, editor.id, issue_id, self.core.clock())
        if html is None:
            html = await run_in_threadpool(self._saved_preview, issue_id)
        if request.query_params.get("scheme") == "dark":
            html = _dark(html)
        return HTMLResponse(html, headers={PREVIEW_FRAME_HEADER: "1"})

    def _saved_preview(self, issue_id: str) -> str:
        folder = self._folder(issue_id)
        try:
            return (folder / "build" / "preview.html").read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PageError(404, "No preview yet", "Open the issue on the desk to build its preview.") from None

    def _folder(self, issue_id: str) -> Any:
        from ...compose import is_issue_id

        if not is_issue_id(issue_id):
            raise PageError(404, "Issue not found", "There is no issue with that name.")
        return self.core.settings.path(self.core.settings.issues_dir) / issue_id

    async def text(self, request: Request, editor: EditorRow) -> Response:
        folder = self._folder(request.path_params["issue_id"])
        try:
            text = await run_in_threadpool((folder / "build" / "email.txt").read_text, encoding="utf-8")
        except FileNotFoundError:
            raise PageError(404, "No plain-text part yet", "Open the issue on the desk to build it.") from None
        return PlainTextResponse(text)

    async def draft(self, request: Request, editor: EditorRow) -> Response:
        """For the page's script: render the unsaved form, keep the HTML for the iframe, return the checks."""
        issue_id = request.path_params["issue_id"]
        form = await self.core.form(request, f"edit:{issue_id}")
        edit = self._edit_from(form)
        try:
            opened = await run_in_threadpool(desk_jobs.open_issue, self.core.settings, issue_id)
            problems = edit_problems(edit, opened.known)
            if problems:
                return JSONResponse({"ok": False, "problems": problems})
            html, report = await run_in_threadpool(desk_jobs.draft_preview, self.core.settings, issue_id, edit)
        except NewsletterError as exc:
            return JSONResponse({"ok": False, "problems": {"preview": str(exc)}})
        await self.core.db(web_state.save_draft, editor.id, issue_id, html, self.core.clock())
        findings = [{"level": f.level, "message": f.message} for f in report.findings]
        return Response(json.dumps({"ok": True, "findings": findings, "blocking": not report.ok}),
                        media_type="application/json")
