"""Leased claims on both stores (the `store` fixture): the per-message subscribed check sees an unsubscribe
committed by another connection after the claim, outcomes recorded but not yet written (PostgreSQL writes them
with the next statement that needs them) are never lost or misapplied, and claims find fresh rows past any
number of taken ones without claiming more than asked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from smtp_servers import simple_message

from newsletter.models import Message, Subscriber
from newsletter.send import SendPolicy, send_issue
from newsletter.store import Store, subscribers
from newsletter.store.claims import Claims, Lease, claim_next
from newsletter.store.claimrows import MAX_WINDOW
from newsletter.transports.memory import MemoryTransport
from store_support import pg_database, pg_template, second, store  # noqa: F401 - fixtures

ISSUE = "2026-11-25"


@pytest.fixture()
def people(store: Store) -> list[Subscriber]:
    with store.connection() as conn:
        added = [subscribers.add(conn, f"reader{i}@example.com", f"Reader {i}") for i in range(1, 13)]
        conn.commit()
    return added


@pytest.fixture()
def conn(store: Store, people: list[Subscriber]) -> Iterator[Any]:
    with store.connection() as connection:
        yield connection


def committed(store: Store) -> dict[int, str]:
    """The ledger as another connection sees it: only what was committed."""
    with second(store) as other:
        return {int(r[0]): r[1] for r in other.execute(
            "SELECT subscriber_id, status FROM ledger WHERE issue_id = ?", (ISSUE,)).fetchall()}


def unsubscribe_elsewhere(store: Store, subscriber_id: int) -> None:
    with second(store) as other:
        subscribers.unsubscribe(other, subscriber_id)  # commits


def test_an_unsubscribe_committed_between_the_claim_and_the_hand_off_stops_that_message(
        store: Store, conn: Any, people: list[Subscriber]) -> None:
    # Claims of 5: while the message of the 2nd subscriber of a batch is made, another connection unsubscribes
    # the 3rd, whose row this sender claimed (and committed) already. Its message must never reach the transport.
    order = [p.id for p in people]
    victims = {order[2], order[7]}
    leaving = {order[1]: order[2], order[6]: order[7]}

    def make(subscriber: Subscriber) -> Message:
        if subscriber.id in leaving:
            victim = leaving.pop(subscriber.id)
            with second(store) as other:
                claimed = other.execute("SELECT status, claimed_by FROM ledger WHERE issue_id = ?"
                                        " AND subscriber_id = ?", (ISSUE, victim)).fetchone()
            assert claimed is not None and claimed[0] == "claimed" and claimed[1]  # claimed before it left
            unsubscribe_elsewhere(store, victim)
        return simple_message(ISSUE, subscriber)

    transport = MemoryTransport()
    report = send_issue(conn, ISSUE, make_message=make, transport_factory=lambda: transport,
                        policy=SendPolicy(claim_size=5))
    sent = {int(m.message_id.split(".")[1].split("@")[0]) for m in transport.messages}
    assert sent == set(order) - victims
    assert report.sent == len(order) - 2 and report.failed == report.deferred == 0
    rows = committed(store)
    assert all(rows[sid] == "sent" for sid in sent)
    assert not victims & rows.keys()  # the claims were given back: no row, nothing pending for them
    assert not leaving  # both unsubscribes happened mid-send


# With results pending (recorded, not committed) only on PostgreSQL: on SQLite they hold the file's write lock,
# so no other connection can commit an unsubscribe before they are committed.
@pytest.mark.parametrize(("store", "pending"), [
    pytest.param("sqlite", 0, id="sqlite-0"),
    pytest.param("postgresql", 0, id="postgresql-0", marks=pytest.mark.postgres),
    pytest.param("postgresql", 3, id="postgresql-3", marks=pytest.mark.postgres),
], indirect=["store"])
def test_the_check_answers_after_a_commit_by_another_connection(store: Store, conn: Any, people: list[Subscriber],
                                                                pending: int) -> None:
    claims = Claims(conn, ISSUE, Lease.new(60), commit_every=100, commit_interval=3600)
    batch = claims.next_batch(6)
    for subscriber in batch[:pending]:  # outcomes recorded, not committed (commit_every=100)
        claims.mark_sent(subscriber.id, f"m{subscriber.id}@x")
    target = batch[pending].id
    assert claims.subscribed_among([target]) == {target}
    unsubscribe_elsewhere(store, target)
    assert claims.subscribed_among([target]) == set()
    claims.flush()
    rows = committed(store)
    assert [rows[s.id] for s in batch[:pending]] == ["sent"] * pending
    assert rows[target] == "claimed" and claims.lost == 0


def test_recorded_outcomes_land_before_a_release_of_everything_and_a_reopen(store: Store, conn: Any) -> None:
    claims = Claims(conn, ISSUE, Lease.new(60), commit_every=100, commit_interval=3600)
    batch = [s.id for s in claims.next_batch(6)]
    claims.release([batch[3]])  # a write transaction is open now: the outcomes below are written inside it
    claims.mark_sent(batch[0], "m0@x")
    claims.mark_deferred(batch[1], 451, "try later")
    claims.mark_failed(batch[2], 550, "quota")
    claims.reopen([batch[2]])  # a refusal about the sender: the failed row goes back to pending
    claims.release_all()  # what was never handed over goes back; the outcomes above stay
    rows = committed(store)
    assert rows == {batch[0]: "sent", batch[1]: "deferred"}
    with second(store) as other:
        code, reason, attempts = other.execute("SELECT code, reason, attempts FROM ledger WHERE issue_id = ?"
                                               " AND subscriber_id = ?", (ISSUE, batch[1])).fetchone()
    assert (code, reason, attempts) == (451, "try later", 1)


def test_an_outcome_for_a_row_taken_over_meanwhile_is_dropped_and_counted(store: Store, conn: Any) -> None:
    slow = Claims(conn, ISSUE, Lease("elsewhere:0:1:aaaa", 60), commit_every=100, commit_interval=3600)
    batch = [s.id for s in slow.next_batch(3)]
    with second(store) as other:  # the lease ran out and another sender took the rows over
        other.execute("UPDATE ledger SET claimed_by = 'elsewhere:0:2:bbbb' WHERE issue_id = ? AND subscriber_id = ?",
                      (ISSUE, batch[0]))
        other.commit()
    slow.mark_sent(batch[0], "late@x")
    slow.mark_sent(batch[1], "ok@x")
    slow.flush()
    assert slow.lost == 1
    assert committed(store) == {batch[0]: "claimed", batch[1]: "sent", batch[2]: "claimed"}


def test_a_claim_walks_past_taken_rows_and_claims_no_more_than_asked(store: Store, conn: Any,
                                                                    people: list[Subscriber]) -> None:
    for i in range(13, 41):
        subscribers.add(conn, f"reader{i}@example.com")
    conn.commit()
    ids = sorted(int(r[0]) for r in conn.execute("SELECT id FROM subscribers").fetchall())
    assert len(ids) == 40
    fresh = {ids[34], ids[36], ids[37], ids[38], ids[39]}
    with second(store) as other:  # an earlier send finished everyone else
        for sid in set(ids) - fresh:
            other.execute("INSERT INTO ledger (issue_id, subscriber_id, status) VALUES (?, ?, 'sent')", (ISSUE, sid))
        other.commit()
    lease = Lease.new(60)
    # PostgreSQL: windows of 2 find nothing five times, then grow to 4, 8, 16; the last finds three fresh rows.
    first = claim_next(conn, ISSUE, lease, limit=2, after=0)
    assert [s.id for s in first.subscribers] == [ids[34], ids[36]] and first.cursor == ids[36]
    assert committed(store).get(ids[37]) is None  # the third one was given back, not left claimed
    then = claim_next(conn, ISSUE, lease, limit=2, after=first.cursor)
    assert [s.id for s in then.subscribers] == [ids[37], ids[38]]
    last = claim_next(conn, ISSUE, lease, limit=2, after=then.cursor)
    assert [s.id for s in last.subscribers] == [ids[39]]
    assert claim_next(conn, ISSUE, lease, limit=2, after=last.cursor).subscribers == ()
    assert sorted(k for k, v in committed(store).items() if v == "claimed") == sorted(fresh)
    assert MAX_WINDOW * 2 >= 16


def test_two_senders_claim_disjoint_rows_and_between_them_every_row(store: Store, conn: Any,
                                                                     people: list[Subscriber]) -> None:
    a = Claims(conn, ISSUE, Lease.new(60))
    with store.connection() as other:
        b = Claims(other, ISSUE, Lease.new(60))
        seen: list[int] = []
        while True:
            got = [s.id for s in a.next_batch(2)] + [s.id for s in b.next_batch(3)]
            if not got:
                break
            seen += got
    assert sorted(seen) == sorted(p.id for p in people)
    assert set(committed(store).values()) == {"claimed"}


def test_the_hand_off_check_and_commit_write_every_recorded_outcome(store: Store, conn: Any) -> None:
    # What the send loop does just before each hand-off: the group's check, then commit_recorded.
    claims = Claims(conn, ISSUE, Lease.new(60), commit_every=100, commit_interval=3600)
    batch = [s.id for s in claims.next_batch(6)]
    claims.mark_sent(batch[0], "m0@x")
    claims.mark_failed(batch[1], 550, "no such user")
    assert claims.subscribed_among([batch[2]]) == {batch[2]}
    claims.commit_recorded()
    assert committed(store) == {batch[0]: "sent", batch[1]: "failed", **{sid: "claimed" for sid in batch[2:]}}
    unsubscribe_elsewhere(store, batch[3])  # nothing of ours is left uncommitted: SQLite lets it through too
    claims.release([batch[2]])  # an open write transaction: committed by the next call as well
    claims.mark_sent(batch[4], "m4@x")
    assert claims.subscribed_among([batch[3]]) == set()
    claims.commit_recorded()
    rows = committed(store)
    assert batch[2] not in rows and rows[batch[4]] == "sent" and rows[batch[3]] == "claimed"


def test_several_outcomes_written_with_one_group_check_keep_every_field(store: Store, conn: Any) -> None:
    """A hand-off of several connections' results: on PostgreSQL the outcomes go in one pipeline with the group's
    check; each row gets exactly what one mark at a time gives it (the SQLite path)."""
    claims = Claims(conn, ISSUE, Lease.new(60), commit_every=100, commit_interval=3600)
    batch = [s.id for s in claims.next_batch(6)]
    claims.mark_sent(batch[0], "m0@x")
    claims.mark_deferred(batch[1], 451, "try later")
    claims.mark_failed(batch[2], 550, "no such user")
    claims.mark_sent(batch[3], "m3@x")
    assert claims.subscribed_among([batch[4], batch[5]]) == {batch[4], batch[5]}
    claims.commit_recorded()
    with second(store) as other:
        rows = {int(r[0]): tuple(r[1:]) for r in other.execute(
            "SELECT subscriber_id, status, attempts, code, reason, message_id, sent_at IS NOT NULL,"
            " claimed_until IS NULL FROM ledger WHERE issue_id = ?", (ISSUE,)).fetchall()}
    assert rows[batch[0]] == ("sent", 1, None, None, "m0@x", True, True)
    assert rows[batch[1]] == ("deferred", 1, 451, "try later", None, False, True)
    assert rows[batch[2]] == ("failed", 1, 550, "no such user", None, False, True)
    assert rows[batch[3]] == ("sent", 1, None, None, "m3@x", True, True)
    assert rows[batch[4]][0] == rows[batch[5]][0] == "claimed" and claims.lost == 0


@pytest.mark.parametrize(("store", "pending"), [
    pytest.param("sqlite", 0, id="sqlite-0"),
    pytest.param("postgresql", 0, id="postgresql-0", marks=pytest.mark.postgres),
    pytest.param("postgresql", 2, id="postgresql-2", marks=pytest.mark.postgres),
], indirect=["store"])
def test_a_hand_off_group_is_checked_in_one_query_after_commits_elsewhere(store: Store, conn: Any,
                                                                          people: list[Subscriber],
                                                                          pending: int) -> None:
    claims = Claims(conn, ISSUE, Lease.new(60), commit_every=100, commit_interval=3600)
    batch = [s.id for s in claims.next_batch(8)]
    for sid in batch[:pending]:  # recorded, not committed: written with the check (PostgreSQL)
        claims.mark_sent(sid, f"m{sid}@x")
    group = batch[pending:pending + 4]
    assert claims.subscribed_among(group) == set(group)
    unsubscribe_elsewhere(store, group[1])
    unsubscribe_elsewhere(store, group[3])
    assert claims.subscribed_among(group) == {group[0], group[2]}
    claims.commit_recorded()
    assert claims.subscribed_among([]) == set()
    rows = committed(store)  # the check and commit_recorded committed the recorded outcomes
    assert [rows[sid] for sid in batch[:pending]] == ["sent"] * pending


@pytest.mark.parametrize("store", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_postgresql_prepares_the_per_message_statements_and_the_send_leaves_no_setting_behind(
        store: Store, conn: Any) -> None:
    claims = Claims(conn, ISSUE, Lease.new(60))
    assert conn.execute("SHOW enable_seqscan").fetchone()[0] == "off"  # while it sends: no generic seq-scan plan
    batch = [s.id for s in claims.next_batch(12)]
    for sid in batch[:8]:  # psycopg prepares a statement on its 5th use (prepare_threshold), `?` rewritten or not
        assert claims.subscribed_among([sid]) == {sid}
        claims.mark_sent(sid, f"m{sid}@x")
    prepared = [row[0] for row in conn.execute("SELECT statement FROM pg_prepared_statements").fetchall()]
    assert any(text.startswith("SELECT id FROM subscribers WHERE id = $1") for text in prepared)
    assert any(text.startswith("UPDATE ledger SET status = $1") for text in prepared)
    claims.release_all()
    claims.end()
    conn.commit()
    assert conn.execute("SHOW enable_seqscan").fetchone()[0] == "on"
    assert list(committed(store).values()).count("sent") == 8
