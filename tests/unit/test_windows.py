from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.dispatcher.windows import opens_at
from shared.events import Channel, QuietHours, TenantSettings

TORONTO = ZoneInfo("America/Toronto")
TOKYO = ZoneInfo("Asia/Tokyo")
DEFAULT = TenantSettings()

# 2026-11-27 is a Friday, 2026-11-28 a Saturday, 2026-11-30 a Monday (Toronto on EST, UTC-5).


def toronto(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TORONTO)


def assert_opening(now: datetime, result: datetime | None, local: datetime) -> None:
    """`result` is `local` (a wall time in `local`'s zone), aware UTC, after `now`."""
    assert result is not None
    assert result.tzinfo is UTC
    assert result > now
    assert result == local
    zone = local.tzinfo
    assert result.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None)


# --- email days ---------------------------------------------------------------------------------


def test_email_on_a_friday_afternoon_leaves_now() -> None:
    assert opens_at(toronto(27, 16), "email", DEFAULT) is None


def test_email_on_a_saturday_waits_for_monday_midnight_local() -> None:
    now = toronto(28, 10)
    result = opens_at(now, "email", DEFAULT)
    assert_opening(now, result, toronto(30, 0))
    assert result is not None
    assert result == datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    assert result.astimezone(TORONTO).strftime("%A") == "Monday"


def test_email_a_minute_before_monday_waits_a_minute() -> None:
    now = toronto(29, 23, 59)
    result = opens_at(now, "email", DEFAULT)
    assert_opening(now, result, toronto(30, 0))
    assert result is not None
    assert result - now == timedelta(minutes=1)


def test_email_at_monday_midnight_leaves_now() -> None:
    assert opens_at(toronto(30, 0), "email", DEFAULT) is None


def test_the_tenant_time_zone_decides_the_day_not_utc() -> None:
    # Saturday 02:00 UTC is still Friday 21:00 in Toronto.
    now = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
    assert now.strftime("%A") == "Saturday"
    assert opens_at(now, "email", DEFAULT) is None


def test_friday_evening_utc_is_already_saturday_in_tokyo() -> None:
    # Friday 16:00 UTC: Friday 11:00 in Toronto, Saturday 01:00 in Tokyo.
    now = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    assert opens_at(now, "email", DEFAULT) is None
    tokyo = TenantSettings(time_zone="Asia/Tokyo")
    result = opens_at(now, "email", tokyo)
    assert_opening(now, result, datetime(2026, 11, 30, 0, 0, tzinfo=TOKYO))
    assert result == datetime(2026, 11, 29, 15, 0, tzinfo=UTC)


def test_weekend_only_email_on_a_monday_waits_for_saturday() -> None:
    weekend = TenantSettings(email_days=["sat", "sun"])
    now = toronto(30, 9)
    result = opens_at(now, "email", weekend)
    assert_opening(now, result, datetime(2026, 12, 5, 0, 0, tzinfo=TORONTO))
    assert opens_at(toronto(28, 10), "email", weekend) is None


def test_email_ignores_sms_quiet_hours() -> None:
    assert opens_at(toronto(27, 23), "email", DEFAULT) is None


# --- sms quiet hours ----------------------------------------------------------------------------


def test_sms_in_the_evening_waits_for_eight_next_morning() -> None:
    now = toronto(27, 22, 30)
    assert_opening(now, opens_at(now, "sms", DEFAULT), toronto(28, 8))


def test_sms_at_quiet_hours_start_waits() -> None:
    now = toronto(27, 21, 0)
    assert_opening(now, opens_at(now, "sms", DEFAULT), toronto(28, 8))


def test_sms_just_before_quiet_hours_leaves_now() -> None:
    assert opens_at(toronto(27, 20, 59), "sms", DEFAULT) is None


def test_sms_early_morning_waits_for_eight_the_same_day() -> None:
    now = toronto(27, 7, 59)
    assert_opening(now, opens_at(now, "sms", DEFAULT), toronto(27, 8))


def test_sms_after_midnight_waits_for_eight_the_same_day() -> None:
    now = toronto(28, 0, 30)
    assert_opening(now, opens_at(now, "sms", DEFAULT), toronto(28, 8))


def test_sms_at_eight_leaves_now() -> None:
    assert opens_at(toronto(27, 8), "sms", DEFAULT) is None


def test_sms_goes_out_on_weekends_by_default() -> None:
    assert opens_at(toronto(29, 12), "sms", DEFAULT) is None


def test_sms_without_quiet_hours_always_leaves() -> None:
    settings = TenantSettings(sms_quiet_hours=None)
    for hour in range(24):
        assert opens_at(toronto(28, hour), "sms", settings) is None


def test_quiet_hours_within_one_day() -> None:
    lunch = TenantSettings(sms_quiet_hours=QuietHours(start="12:00", end="13:00"))
    now = toronto(27, 12, 30)
    assert_opening(now, opens_at(now, "sms", lunch), toronto(27, 13))
    assert_opening(toronto(27, 12), opens_at(toronto(27, 12), "sms", lunch), toronto(27, 13))
    assert opens_at(toronto(27, 11, 59), "sms", lunch) is None
    assert opens_at(toronto(27, 13), "sms", lunch) is None
    assert opens_at(toronto(27, 23), "sms", lunch) is None
    assert opens_at(toronto(27, 3), "sms", lunch) is None


def test_quiet_hours_keep_their_minutes() -> None:
    evening = TenantSettings(sms_quiet_hours=QuietHours(start="21:30", end="07:45"))
    assert opens_at(toronto(27, 21, 15), "sms", evening) is None
    now = toronto(27, 21, 30)
    assert_opening(now, opens_at(now, "sms", evening), toronto(28, 7, 45))
    now = toronto(28, 7, 30)
    assert_opening(now, opens_at(now, "sms", evening), toronto(28, 7, 45))
    assert opens_at(toronto(28, 7, 45), "sms", evening) is None


def test_quiet_hours_of_zero_length_never_apply() -> None:
    empty = TenantSettings(sms_quiet_hours=QuietHours(start="08:00", end="08:00"))
    for hour in range(24):
        assert opens_at(toronto(28, hour), "sms", empty) is None


def test_sms_days_and_quiet_hours_combine() -> None:
    no_sunday = TenantSettings(sms_days=["mon", "tue", "wed", "thu", "fri", "sat"])
    now = toronto(28, 22)
    result = opens_at(now, "sms", no_sunday)
    assert_opening(now, result, toronto(30, 8))
    # Sunday noon is outside quiet hours but not an SMS day.
    now = toronto(29, 12)
    assert_opening(now, opens_at(now, "sms", no_sunday), toronto(30, 8))


# --- daylight saving time -----------------------------------------------------------------------


def test_email_over_the_spring_forward_weekend_opens_monday_midnight_local() -> None:
    # Clocks go forward on Sunday 2026-03-08 at 02:00 in Toronto: EST (UTC-5) -> EDT (UTC-4).
    now = toronto(7, 10, month=3)
    result = opens_at(now, "email", DEFAULT)
    assert_opening(now, result, toronto(9, 0, month=3))
    assert result == datetime(2026, 3, 9, 4, 0, tzinfo=UTC)


def test_email_over_the_fall_back_weekend_opens_monday_midnight_local() -> None:
    # Clocks go back on Sunday 2026-11-01 at 02:00 in Toronto: EDT (UTC-4) -> EST (UTC-5).
    now = toronto(31, 10, month=10)
    result = opens_at(now, "email", DEFAULT)
    assert_opening(now, result, toronto(2, 0))
    assert result == datetime(2026, 11, 2, 5, 0, tzinfo=UTC)


def test_sms_on_the_spring_forward_night_waits_for_eight_local() -> None:
    now = toronto(7, 22, 30, month=3)
    result = opens_at(now, "sms", DEFAULT)
    assert_opening(now, result, toronto(8, 8, month=3))
    assert result == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)


# --- properties ---------------------------------------------------------------------------------


def test_a_result_is_aware_utc_and_after_now_whatever_the_zone_of_now() -> None:
    for now in (
        toronto(28, 10),
        toronto(28, 10).astimezone(UTC),
        toronto(28, 10).astimezone(TOKYO),
    ):
        result = opens_at(now, "email", DEFAULT)
        assert result == datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
        assert result is not None
        assert result.tzinfo is UTC
        assert result > now


def quiet(local: datetime) -> bool:
    return not time(8) <= local.time() < time(21)


@pytest.mark.parametrize(
    "start",
    [
        datetime(2026, 11, 23, 0, 0, tzinfo=UTC),  # two ordinary weeks
        datetime(2026, 3, 2, 0, 0, tzinfo=UTC),  # spring forward on 2026-03-08
        datetime(2026, 10, 26, 0, 0, tzinfo=UTC),  # fall back on 2026-11-01
    ],
)
@pytest.mark.parametrize("channel", ["email", "sms"])
def test_every_half_hour_of_two_weeks(start: datetime, channel: Channel) -> None:
    for offset in range(0, 14 * 24 * 60, 30):
        now = start + timedelta(minutes=offset)
        result = opens_at(now, channel, DEFAULT)
        local_now = now.astimezone(TORONTO)
        closed = local_now.weekday() >= 5 if channel == "email" else quiet(local_now)
        # None exactly when sending is allowed now.
        assert (result is None) == (not closed), now
        if result is None:
            continue
        assert result.tzinfo is UTC
        assert result > now
        local = result.astimezone(TORONTO)
        if channel == "email":
            assert local.weekday() < 5, now
            assert local.time() == time(0), now
        else:
            assert not quiet(local), now
            assert local.time() == time(8), now
        # The first allowed moment: a minute earlier is still closed.
        assert opens_at(result - timedelta(minutes=1), channel, DEFAULT) is not None, now
