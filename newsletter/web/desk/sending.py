"""Desk actions on an issue: a proof to yourself, approve, send now (confirmed), schedule, cancel, progress."""

from __future__ import annotations

import datetime as dt

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...jobs import desk as desk_jobs
from ...jobs.accounts import EditorRow
from ...jobs.desk import DeskRefusal
from ...errors import NewsletterError, ScheduleError
from ...schedule import cancel as cancel_job, config_reference, list_jobs, schedule_send
from ...settings import Settings
from ..pages import PageError
from .core import DeskCore

__all__ = ["SendingPages", "scheduled_sends"]


def scheduled_sends(settings: Settings) -> dict[str, dt.datetime | None]:
    """Issue id -> when its send job fires, for the jobs the scheduler has not run yet."""
    return {job.job_id.partition(":")[2]: job.next_run for job in list_jobs(settings)
            if job.job_id.startswith("send:") and job.state in ("scheduled", "overdue", "running")}


def _refused(exc: NewsletterError, retry: str) -> PageError:
    return PageError(409, "This cannot be done right now", str(exc), retry=retry)


class SendingPages:
    def __init__(self, core: DeskCore) -> None:
        self.core = core

    def routes(self) -> list[Route]:
        g = self.core.signed_in
        return [
            Route("/desk/issues/{issue_id}/proof", g(self.proof), methods=["POST"], name="desk_proof"),
            Route("/desk/issues/{issue_id}/approve", g(self.approve, approver=True), methods=["POST"],
                  name="desk_approve"),
            Route("/desk/issues/{issue_id}/send", g(self.send, approver=True), methods=["GET", "POST"],
                  name="desk_send"),
            Route("/desk/issues/{issue_id}/schedule", g(self.schedule, approver=True), methods=["POST"],
                  name="desk_schedule"),
            Route("/desk/issues/{issue_id}/cancel", g(self.cancel, approver=True), methods=["POST"],
                  name="desk_cancel"),
            Route("/desk/issues/{issue_id}/progress", g(self.progress), name="desk_progress"),
        ]

    def _back(self, request: Request, done: str = "") -> Response:
        url = self.core.url(request, "desk_issue", issue_id=request.path_params["issue_id"])
        return self.core.redirect_to(url + (f"?done={done}#actions" if done else ""))

    async def proof(self, request: Request, editor: EditorRow) -> Response:
        issue_id = request.path_params["issue_id"]
        await self.core.form(request, f"proof:{issue_id}")
        try:
            await run_in_threadpool(desk_jobs.proof, self.core.settings, editor, issue_id)
        except NewsletterError as exc:
            raise _refused(exc, self.core.url(request, "desk_issue", issue_id=issue_id)) from None
        return self._back(request, "proof")

    async def approve(self, request: Request, editor: EditorRow) -> Response:
        issue_id = request.path_params["issue_id"]
        await self.core.form(request, f"approve:{issue_id}")
        try:
            await run_in_threadpool(desk_jobs.approve, self.core.settings, editor, issue_id)
        except NewsletterError as exc:
            raise _refused(exc, self.core.url(request, "desk_issue", issue_id=issue_id)) from None
        return self._back(request, "approved")

    async def send(self, request: Request, editor: EditorRow) -> Response:
        issue_id = request.path_params["issue_id"]
        back = self.core.url(request, "desk_issue", issue_id=issue_id)
        if request.method == "GET":
            try:
                count = await run_in_threadpool(desk_jobs.recipients, self.core.settings, issue_id)
            except NewsletterError as exc:
                raise _refused(exc, back) from None
            return self.core.render(request, "send.html", {"issue_id": issue_id, "count": count}, editor=editor)
        await self.core.form(request, f"send:{issue_id}")
        try:
            await run_in_threadpool(desk_jobs.start_send, self.core.settings, editor, issue_id)
        except NewsletterError as exc:
            raise _refused(exc, back) from None
        return self.core.redirect(request, "desk_progress", issue_id=issue_id)

    async def schedule(self, request: Request, editor: EditorRow) -> Response:
        issue_id = request.path_params["issue_id"]
        form = await self.core.form(request, f"schedule:{issue_id}")
        back = self.core.url(request, "desk_issue", issue_id=issue_id)
        try:
            run_at = await run_in_threadpool(self._schedule, editor, issue_id, form.get("day").strip(),
                                             form.get("time").strip(), form.get("zone").strip())
        except DeskRefusal as exc:
            raise _refused(exc, back) from None
        except ScheduleError as exc:
            # The CLI's words, minus its option names: the desk's fields are Date, Time and Time zone.
            message = str(exc).replace("--at ", "The date and time ").replace("--tz ", "The time zone ")
            message = message.replace("; give a later time, or add --now to send as soon as the scheduler runs",
                                      ". Please choose a later time.")
            raise PageError(409, "This cannot be scheduled", message, retry=back) from None
        await self.core.audit(editor, "schedule", issue_id=issue_id, detail=f"for {run_at.isoformat()}")
        return self._back(request, "scheduled")

    def _schedule(self, editor: EditorRow, issue_id: str, day: str, time: str, zone: str) -> dt.datetime:
        """The same APScheduler job as `newsletter schedule ISSUE --at`; `newsletter scheduler` fires it."""
        settings = self.core.settings
        desk_jobs.require_approved(settings, editor, issue_id, doing="schedule an issue")
        return schedule_send(settings, issue_id, config_path=config_reference(None, settings),
                             at=f"{day} {time}", tz=zone or None).run_at

    async def cancel(self, request: Request, editor: EditorRow) -> Response:
        issue_id = request.path_params["issue_id"]
        await self.core.form(request, f"cancel:{issue_id}")
        try:
            await run_in_threadpool(cancel_job, self.core.settings, f"send:{desk_jobs.issue_name(issue_id)}")
        except ScheduleError:
            raise PageError(409, "This cannot be done right now", "This issue is not scheduled.",
                            retry=self.core.url(request, "desk_issue", issue_id=issue_id)) from None
        except NewsletterError as exc:
            raise _refused(exc, self.core.url(request, "desk_issue", issue_id=issue_id)) from None
        await self.core.audit(editor, "cancel", issue_id=issue_id)
        return self._back(request, "cancelled")

    async def progress(self, request: Request, editor: EditorRow) -> Response:
        issue_id = request.path_params["issue_id"]
        try:
            counts = await run_in_threadpool(desk_jobs.progress, self.core.settings, issue_id)
        except DeskRefusal:
            raise PageError(404, "Issue not found", "There is no issue with that name.") from None
        running = desk_jobs.sending_now(issue_id)
        total = counts.sent + counts.failed + counts.remaining
        # A refresh header, not a script: the page updates itself while the send runs, with or without JavaScript.
        headers = {"Refresh": "2"} if running or counts.claimed else None
        return self.core.render(request, "progress.html", {"issue_id": issue_id, "counts": counts, "total": total,
                                                            "running": running}, editor=editor, headers=headers)
