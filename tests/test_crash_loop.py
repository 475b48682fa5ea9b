"""Crash loops: `newsletter send` in a subprocess, killed at random moments and resumed until done.

The engine is scripts/crash_loop.py (which runs the full size: 2,000 recipients, 20 kills); here it
runs at a size that stays well under two minutes. SIGKILL may cost duplicates but never a lost
subscriber, and no more duplicates than ledger rows left 'claimed' at the kills; SIGTERM finishes
the message in flight and records it, so it costs nothing. The same holds with three sender processes
(`send --workers 3`) on SQLite and on PostgreSQL, when random workers are killed one at a time.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from crash_support import crash_loop

RECIPIENTS, KILLS = 300, 6


@pytest.mark.slow
def test_sigkill_loses_nobody_and_duplicates_stay_within_the_claimed_rows(tmp_path: Path) -> None:
    result = crash_loop.run_crash_loop(tmp_path / "site", recipients=RECIPIENTS, kills=KILLS, sig=signal.SIGKILL,
                                       seed=7, max_pause=0.3)
    print("\n" + crash_loop._line(result))
    assert result.kills == KILLS and result.runs == KILLS + 1
    assert result.lost == 0 and result.not_sent_in_ledger == 0
    assert result.duplicates <= result.in_flight_bound
    assert result.accepted == RECIPIENTS + result.duplicates


@pytest.mark.slow
def test_sigterm_finishes_the_message_in_flight_and_duplicates_nothing(tmp_path: Path) -> None:
    result = crash_loop.run_crash_loop(tmp_path / "site", recipients=RECIPIENTS, kills=KILLS, sig=signal.SIGTERM,
                                       seed=7, max_pause=0.3)
    print("\n" + crash_loop._line(result))
    assert result.kills == KILLS
    assert result.lost == 0 and result.not_sent_in_ledger == 0
    assert result.duplicates == 0 and result.accepted == RECIPIENTS
    assert result.claimed_after_kills == (0,) * KILLS  # every outcome was recorded before exiting
    assert result.resent_after_crash == 0


@pytest.mark.slow
def test_sigkill_costs_at_most_the_message_in_flight(tmp_path: Path) -> None:
    # The server has accepted 10 messages of this run (about 0.1 s, far inside the 0.5 s commit
    # interval) when the run is killed. With one connection, at most one message is in flight and
    # one more result may be on its way to the ledger: anything beyond two was already recorded by
    # the server but left uncommitted.
    result = crash_loop.run_crash_loop(tmp_path / "site", recipients=60, kills=1, sig=signal.SIGKILL, kill_after=10)
    print("\n" + crash_loop._line(result))
    assert result.lost == 0
    assert result.duplicates <= 2


# --- several sender processes: `send --workers 3`, random workers killed, on SQLite and PostgreSQL ------------

@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> str | None:
    """None for the project's SQLite file, or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.slow
def test_sigkill_of_random_workers_loses_nobody(tmp_path: Path, database: str | None) -> None:
    # Each kill takes one of the 3 workers of `send --workers 3` (a `newsletter worker` joins in its place);
    # the others take its rows over. Its bound: the rows it held when it died.
    result = crash_loop.run_workers_crash_loop(tmp_path / "site", recipients=RECIPIENTS, kills=KILLS, workers=3,
                                               sig=signal.SIGKILL, seed=7, database=database)
    print("\n" + crash_loop._line(result))
    assert result.kills == KILLS and len(result.claimed_after_kills) == KILLS
    assert result.lost == 0 and result.not_sent_in_ledger == 0
    assert result.duplicates <= result.in_flight_bound
    assert result.accepted == RECIPIENTS + result.duplicates


@pytest.mark.slow
def test_sigterm_of_all_workers_duplicates_nothing(tmp_path: Path, database: str | None) -> None:
    result = crash_loop.run_workers_crash_loop(tmp_path / "site", recipients=RECIPIENTS, kills=KILLS, workers=3,
                                               sig=signal.SIGTERM, seed=7, database=database)
    print("\n" + crash_loop._line(result))
    assert result.kills == KILLS and result.runs == KILLS + 1
    assert result.lost == 0 and result.not_sent_in_ledger == 0
    assert result.duplicates == 0 and result.accepted == RECIPIENTS
    assert result.claimed_after_kills == (0,) * KILLS  # every worker recorded its outcomes and gave the rest back
