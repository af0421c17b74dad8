"""EventBridge schedule expressions: what EventBridge accepts and rejects, and when each fires next."""

from datetime import UTC, datetime

import pytest

from smray.errors import UserError
from smray.workstation.schedule.expressions import Cron, Rate, parse

T0 = datetime(2026, 11, 22, 10, 17, 30, tzinfo=UTC)  # a Sunday


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(12 hours)", 43200),
        ("rate(1 day)", 86400),
        ("rate(7 days)", 604800),
        ("rate(1830 days)", 1830 * 86400),  # the longest: 5 years
    ],
)
def test_rates(expression, seconds):
    rate = parse(expression)
    assert isinstance(rate, Rate) and rate.seconds == seconds
    assert (rate.next_after(T0) - T0).total_seconds() == seconds


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("rate(1 minutes)", "singular exactly for 1"),
        ("rate(5 minute)", "singular exactly for 1"),
        ("rate(0 minutes)", "positive"),
        ("rate(-1 hours)", "not a schedule expression"),
        ("rate(5 weeks)", "not a schedule expression"),
        ("rate(1.5 hours)", "not a schedule expression"),
        ("every 5 minutes", "not a schedule expression"),
        ("cron(0 12 * * ?)", "6 fields"),
        ("cron(0 12 * * * *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 12 ? * ? *)", "exactly one of day-of-month and day-of-week"),
        ("cron(60 12 * * ? *)", "minutes value '60'"),
        ("cron(0 24 * * ? *)", "hours value '24'"),
        ("cron(0 12 32 * ? *)", "day-of-month value '32'"),
        ("cron(0 12 ? 13 MON *)", "month value '13'"),
        ("cron(0 12 ? * 8 *)", "day-of-week value '8'"),
        ("cron(0 12 ? * FUNDAY *)", "day-of-week value 'FUNDAY'"),
        ("cron(0 12 ? * MON#6 *)", "occurrence value '6'"),
        ("cron(0 12 * * ? 1969)", "year value '1969'"),
        ("cron(0 18-9 * * ? *)", "runs backwards"),
        # what Python would read as numbers, or could not compute: refused, never a traceback
        ("rate(100000000 days)", "at most 1,830 days"),
        ("rate(2635201 minutes)", "at most 1,830 days"),  # 1,830 days and a minute
        ("rate(1234567890123 days)", "not a schedule expression"),
        ("cron(² * * * ? *)", "minutes value '²'"),
        ("cron(0 12 ? * ٣ *)", "day-of-week value '٣'"),
        ("cron(0 12 ? * MON#٣ *)", "day-of-week value 'MON#٣'"),
        ("cron(0 12 ²W * ? *)", "day-of-month value '²W'"),
        ("cron(0 0 1 1 ? 99999999999999999)", "year value '99999999999999999'"),
    ],
)
def test_what_eventbridge_rejects(expression, message):
    with pytest.raises(UserError, match=message):
        parse(expression)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("cron(0 12 * * ? *)", datetime(2026, 11, 22, 12, 0)),  # noon every day
        ("cron(15 10 * * ? *)", datetime(2026, 11, 23, 10, 15)),  # 10:15 has just passed today
        ("cron(0/15 * * * ? *)", datetime(2026, 11, 22, 10, 30)),
        ("cron(0 8 ? * MON-FRI *)", datetime(2026, 11, 23, 8, 0)),  # weekdays: Monday
        ("cron(0 9 ? * 2 *)", datetime(2026, 11, 23, 9, 0)),  # 2 = MON
        ("cron(0 0 1 * ? *)", datetime(2026, 12, 1, 0, 0)),
        ("cron(0 0 L * ? *)", datetime(2026, 11, 30, 0, 0)),
        ("cron(0 0 LW * ? *)", datetime(2026, 11, 30, 0, 0)),  # the 30th is a Monday
        ("cron(0 0 1W * ? *)", datetime(2026, 12, 1, 0, 0)),  # a Tuesday
        ("cron(0 6 ? * 6L *)", datetime(2026, 11, 27, 6, 0)),  # last Friday of November
        ("cron(0 6 ? * MON#1 *)", datetime(2026, 12, 7, 6, 0)),  # first Monday of December
        ("cron(30 4 1 JAN ? 2027)", datetime(2027, 1, 1, 4, 30)),
        ("cron(0 0 29 FEB ? *)", datetime(2028, 2, 29, 0, 0)),  # the next leap day
    ],
)
def test_when_a_cron_fires_next(expression, expected):
    cron = parse(expression)
    assert isinstance(cron, Cron)
    assert cron.next_after(T0) == expected.replace(tzinfo=UTC)


def test_a_cron_for_a_past_year_never_fires():
    assert parse("cron(0 0 1 1 ? 2020)").next_after(T0) is None
