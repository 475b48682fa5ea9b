"""Schedule times: what the editor typed ('2026-12-01 08:00', 'mon 08:00') -> aware datetimes and triggers."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import TYPE_CHECKING

from newsletter.errors import ScheduleError
from newsletter.settings import Settings

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

__all__ = ["UTC", "now", "utc_iso", "local_and_utc", "zone", "wall_clock", "parse_at", "parse_every",
           "digest_trigger", "dst_notes"]

UTC = dt.timezone.utc
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EVERY = re.compile(r"^(?:(?P<days>[a-z*][a-z,*-]*)\s+)?(?P<hour>\d{1,2}):(?P<minute>\d{2})$")


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def utc_iso(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def local_and_utc(moment: dt.datetime, tz: dt.tzinfo) -> str:
    """'2026-12-01 08:00 CET (07:00 UTC)', for messages and the list."""
    local, utc = moment.astimezone(tz), moment.astimezone(UTC)
    same_day = local.date() == utc.date()
    return f"{local:%Y-%m-%d %H:%M %Z} ({utc:%H:%M} UTC)" if same_day else \
        f"{local:%Y-%m-%d %H:%M %Z} ({utc:%Y-%m-%d %H:%M} UTC)"


def zone(name: str | None, settings: Settings) -> zoneinfo.ZoneInfo:
    if name is None:
        return settings.tz
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"--tz {name!r}: unknown timezone (use an IANA name like Europe/Berlin)",
                            value=name) from None


def wall_clock(naive: dt.datetime, tz: zoneinfo.ZoneInfo) -> str:
    """'ok', 'gap' (the clocks skip this time) or 'fold' (it happens twice)."""
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return "ok"
    return "gap" if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive else "fold"


def parse_at(text: str, tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, str | None]:
    """'2026-12-01 08:00' in `tz` -> an aware datetime, and a note when the local time was ambiguous."""
    raw = text.strip()
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        parsed = None
    if parsed is None or len(raw) <= 10:  # a bare date would silently mean midnight
        raise ScheduleError(f"--at {text!r} is not a date and time; use 'YYYY-MM-DD HH:MM' (e.g. '2026-12-01 08:00')",
                            value=text)
    if parsed.tzinfo is not None:
        return parsed.astimezone(tz), None
    kind = wall_clock(parsed, tz)
    if kind == "gap":
        later = parsed.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)
        raise ScheduleError(f"--at {text!r} does not exist in {tz.key}: the clocks go forward over that time "
                            f"(daylight saving time starts); use a time outside the gap, e.g. '{later:%Y-%m-%d %H:%M}'",
                            value=text)
    at = parsed.replace(tzinfo=tz, fold=0)
    if kind == "fold":
        return at, (f"{parsed:%Y-%m-%d %H:%M} happens twice in {tz.key} (the clocks go back); using the first, "
                    f"{at:%H:%M %Z} = {at.astimezone(UTC):%H:%M} UTC")
    return at, None


def parse_every(text: str) -> tuple[str, int, int]:
    """'mon 08:00', 'mon,thu 08:00', 'mon-fri 07:30', 'daily 08:00' -> (day_of_week, hour, minute)."""
    bad = ScheduleError(f"--every {text!r} is not understood; use days and a time like 'mon 08:00', "
                        "'mon,thu 08:00', 'mon-fri 07:30' or 'daily 08:00'", value=text)
    match = _EVERY.match(text.strip().lower())
    if not match:
        raise bad
    hour, minute = int(match["hour"]), int(match["minute"])
    if hour > 23 or minute > 59:
        raise bad
    days = match["days"] or "daily"
    if days in ("daily", "day", "*"):
        return "*", hour, minute
    parts = []
    for part in days.split(","):
        ends = part.split("-", 1)
        if not all(day in _DAYS or day in _FULL_DAYS for day in ends):
            raise bad
        parts.append("-".join(day[:3] for day in ends))
    return ",".join(parts), hour, minute


def digest_trigger(every: str, tz: zoneinfo.ZoneInfo) -> CronTrigger:
    from apscheduler.triggers.cron import CronTrigger

    days, hour, minute = parse_every(every)
    return CronTrigger(day_of_week=days, hour=hour, minute=minute, timezone=tz)


def dst_notes(trigger: CronTrigger, tz: zoneinfo.ZoneInfo, start: dt.datetime) -> list[str]:
    """What APScheduler does with this time of day on the next DST changes (checked over a year of runs)."""
    notes: dict[str, str] = {}
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire < start + dt.timedelta(days=366) and len(notes) < 2:
        wall = fire.replace(tzinfo=None)
        kind = wall_clock(wall, tz)
        if kind == "gap" and "gap" not in notes:
            notes["gap"] = (f"{wall:%H:%M} does not exist in {tz.key} on {wall:%Y-%m-%d} (the clocks go forward): "
                            f"that run happens at {fire.astimezone(UTC).astimezone(tz):%H:%M %Z} instead")
        elif kind == "fold" and "fold" not in notes:
            notes["fold"] = (f"{wall:%H:%M} happens twice in {tz.key} on {wall:%Y-%m-%d} (the clocks go back): "
                             "the job fires at both; the second run finds that day's digest made and does nothing")
        fire = trigger.get_next_fire_time(fire, fire)
    return list(notes.values())
