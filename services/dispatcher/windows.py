"""When a tenant allows sending: days for email, days and quiet hours for SMS. Pure.

Everything is evaluated in the tenant's time zone, so "no email on Saturday" means the
tenant's Saturday, whatever the server's zone.
"""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.events import WEEKDAYS, Channel, QuietHours, TenantSettings


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _quiet(local: datetime, quiet: QuietHours | None) -> datetime | None:
    """The end of the quiet period `local` is in, else None."""
    if quiet is None:
        return None
    start, end, now = _clock(quiet.start), _clock(quiet.end), local.time()
    if start == end:
        return None
    # When `end` comes before `start`, the quiet period spans midnight.
    inside = start <= now < end if start < end else now >= start or now < end
    if not inside:
        return None
    day = local.date() if now < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=local.tzinfo)


def opens_at(now: datetime, channel: Channel, settings: TenantSettings) -> datetime | None:
    """None when a message may leave now; else the first moment it may (UTC)."""
    zone = ZoneInfo(settings.time_zone)
    days = settings.email_days if channel == "email" else settings.sms_days
    quiet = settings.sms_quiet_hours if channel == "sms" else None
    local = now.astimezone(zone)
    # A week ahead always finds an allowed day (`days` is never empty); quiet hours move the
    # candidate forward at most once per day.
    for _ in range(16):
        if WEEKDAYS[local.weekday()] not in days:
            local = datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=zone)
            continue
        end_of_quiet = _quiet(local, quiet)
        if end_of_quiet is not None:
            local = end_of_quiet
            continue
        break
    opening = local.astimezone(UTC)
    return None if opening <= now else opening
