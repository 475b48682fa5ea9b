"""Consent rules of the subscription pages: who a link may unsubscribe, and who a confirmation may (re)subscribe.

Each function runs in a worker thread with its own connection, inside one write transaction.
Rules (security audit, issue 14):

* Only a confirmation email proves control of a mailbox: a resubscribe or unsubscribe link never
  subscribes anyone by itself; it can only ask for a confirmation email.
* A bounced address is never reactivated from a link (the editor does it, `subscribers add --resubscribe`).
* A confirm link works once, and never undoes an unsubscribe made after the link was sent.
"""

from __future__ import annotations

import datetime as dt

from ..store import Connection
from ..store import dbapi as db, subscribers
from ..models import Subscriber
from ..store.safeguards import use_link
from .pages import PageError
from .subscription import CONFIRM_MAX_AGE, subscriber_for_token

__all__ = ["BOUNCED", "unsubscribe", "confirm"]

BOUNCED = PageError(409, "We cannot restart emails to this address from a link",
                    "Emails to this address could not be delivered, so we stopped sending them. "
                    "If the address works again, please write to us and we will add it back.")
_USED = PageError(400, "This link has already been used",
                  "Each confirmation link works once. To subscribe, please fill in the form again.")
_STALE = PageError(400, "This link is older than your unsubscribe",
                   "You unsubscribed after this link was sent, so it no longer works. "
                   "To subscribe again, please fill in the form again.")


def unsubscribe(conn: Connection, secret: str, token: str, how: str) -> Subscriber:
    with db.transaction(conn):
        who = subscriber_for_token(conn, secret, "unsubscribe", token)
        if who.status != "unsubscribed":
            db.log_event(conn, "web.unsubscribe", detail=f"subscriber {who.id} ({how})")
        return subscribers.unsubscribe(conn, who.id, commit=False)


def _unsubscribed_at(conn: Connection, subscriber_id: int) -> dt.datetime | None:
    stamp = subscribers.unsubscribed_at(conn, subscriber_id)
    try:
        when = dt.datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None
    return when if when is None or when.tzinfo else when.replace(tzinfo=dt.UTC)


def confirm(conn: Connection, token: str, address: str, name: str, issued: dt.datetime) -> Subscriber:
    """Subscribe `address` from a confirm link made at `issued`; PageError if the link may not do it."""
    with db.transaction(conn):
        before = subscribers.find(conn, address)
        if before is not None and before.status == "subscribed":
            use_link(conn, token, keep_for=CONFIRM_MAX_AGE)
            return before  # pressing the button twice, or an old link of a subscriber: no harm, no change
        if before is not None and before.status == "bounced":
            raise BOUNCED
        if not use_link(conn, token, keep_for=CONFIRM_MAX_AGE):  # rolled back if a check below refuses
            raise _USED
        if before is not None and before.status == "unsubscribed":
            left = _unsubscribed_at(conn, before.id)
            # Seconds on both sides: an unsubscribe in the same second as the link does not count as later.
            if left is not None and left > issued:
                raise _STALE
        # The form asks for a first name (the one field): it is both how we greet and how we address.
        result = subscribers.add(conn, address, name, first_name=name, resubscribe=True)
        db.log_event(conn, "web.subscribe", detail=f"subscriber {result.id} (confirmed by email)")
        return result
