"""EventBridge schedule expressions, parsed and checked as EventBridge does, with the next fire time
(UTC) for the local scheduler.

- `rate(N unit)`: N a positive integer; unit minute|hour|day, singular exactly when N is 1; at most
  SEARCH_DAYS days (a rate that fires less often is as good as never, and soon past datetime's years).
- `cron(minutes hours day-of-month month day-of-week year)`: six fields; `, - * /` everywhere, `?` in
  day-of-month or day-of-week (exactly one of them must be `?`), `L` and `W` in day-of-month, `L` and
  `#` in day-of-week (1-7 = SUN-SAT), months 1-12 or JAN-DEC, years 1970-2199.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from smray.errors import UserError

_RATE = re.compile(r"^rate\(([0-9]{1,12}) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}
SEARCH_DAYS = 366 * 5  # an expression that fires less often than this (a past year) never fires


class Schedule:
    expression: str

    def next_after(self, moment: datetime) -> datetime | None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Rate(Schedule):
    expression: str
    seconds: int

    def next_after(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class Cron(Schedule):
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    day_of_month: str  # kept as text: L, W and ? depend on the month
    months: frozenset[int]
    day_of_week: str
    years: frozenset[int]

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after `moment` (UTC, whole minutes), or None within 5 years."""
        start = (moment.astimezone(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)
        day = start.date()
        for _ in range(SEARCH_DAYS):
            if day.year in self.years and day.month in self.months and self._day_matches(day):
                first = (start.hour, start.minute) if day == start.date() else (0, 0)
                for hour in sorted(h for h in self.hours if h >= first[0]):
                    for minute in sorted(self.minutes):
                        if (hour, minute) >= first:
                            return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
            day += timedelta(days=1)
        return None

    def _day_matches(self, day: date) -> bool:
        if self.day_of_month != "?":
            return _dom_matches(self.day_of_month, day)
        return _dow_matches(self.day_of_week, day)


def parse(expression: str) -> Schedule:
    text = expression.strip()
    if match := _RATE.match(text):
        value, unit = int(match[1]), match[2]
        if value < 1:
            raise UserError(f"{expression}: the rate must be a positive whole number")
        if (value == 1) != (not unit.endswith("s")):
            wanted = unit.rstrip("s") if value == 1 else unit.rstrip("s") + "s"
            raise UserError(f"{expression}: say rate({value} {wanted}) (singular exactly for 1)")
        seconds = value * _UNITS[unit.rstrip("s")]
        if seconds > SEARCH_DAYS * _UNITS["day"]:
            raise UserError(f"{expression}: the rate must be at most {SEARCH_DAYS:,} days (5 years)")
        return Rate(text, seconds)
    if match := _CRON.match(text):
        return _cron(text, match[1].split())
    raise UserError(
        f"{expression!r} is not a schedule expression: use rate(5 minutes), rate(1 hour) or "
        "cron(minutes hours day-of-month month day-of-week year)"
    )


def _cron(text: str, fields: list[str]) -> Cron:
    if len(fields) != 6:
        raise UserError(f"{text}: cron takes 6 fields (minutes hours day-of-month month day-of-week year)")
    minutes, hours, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise UserError(f"{text}: exactly one of day-of-month and day-of-week must be '?'")
    if dom != "?":
        _check_dom(text, dom)
    if dow != "?":
        _check_dow(text, dow)
    return Cron(
        expression=text,
        minutes=_values(text, "minutes", minutes, 0, 59),
        hours=_values(text, "hours", hours, 0, 23),
        day_of_month=dom,
        months=_values(text, "month", month, 1, 12, MONTHS),
        day_of_week=dow,
        years=_values(text, "year", year, 1970, 2199),
    )


def _values(
    text: str, name: str, field: str, low: int, high: int, names: dict[str, int] | None = None
) -> frozenset[int]:
    """`*`, `a`, `a-b`, `*/n`, `a/n`, `a-b/n`, comma-separated."""
    out: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = _number(text, name, step_text, 1, high - low + 1) if step_text else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            first, last = _number(text, name, a, low, high, names), _number(text, name, b, low, high, names)
            if first > last:
                raise UserError(f"{text}: {name} range {base} runs backwards")
        else:
            first = _number(text, name, base, low, high, names)
            last = high if step_text else first
        out.update(range(first, last + 1, step))
    return frozenset(out)


def _number(
    text: str, name: str, token: str, low: int, high: int, names: dict[str, int] | None = None
) -> int:
    token = token.upper()
    if names and token in names:
        return names[token]
    if not re.fullmatch("[0-9]{1,4}", token) or not low <= int(token) <= high:  # ASCII: '²' is a digit too
        raise UserError(f"{text}: {name} value {token!r} is not in {low}-{high}")
    return int(token)


def _check_dom(text: str, field: str) -> None:
    if field in ("L", "LW"):
        return
    if re.fullmatch(r"[0-9]{1,2}W", field):
        _number(text, "day-of-month", field[:-1], 1, 31)
        return
    _values(text, "day-of-month", field, 1, 31)


def _check_dow(text: str, field: str) -> None:
    if match := re.fullmatch(r"(\w+)L", field):
        _number(text, "day-of-week", match[1], 1, 7, DAYS)
    elif match := re.fullmatch(r"(\w+)#([0-9])", field):
        _number(text, "day-of-week", match[1], 1, 7, DAYS)
        _number(text, "day-of-week occurrence", match[2], 1, 5)
    elif field != "L":
        _values(text, "day-of-week", field, 1, 7, DAYS)


def _weekday(day: date) -> int:
    return (day.weekday() + 1) % 7 + 1  # Monday=0 in Python -> SUN=1 .. SAT=7


def _dom_matches(field: str, day: date) -> bool:
    last = calendar.monthrange(day.year, day.month)[1]
    if field == "L":
        return day.day == last
    if field == "LW" or field.endswith("W"):
        target = last if field == "LW" else min(int(field[:-1]), last)
        nearest = date(day.year, day.month, target)
        if nearest.weekday() == 5:  # Saturday: Friday before, unless that leaves the month
            nearest = nearest - timedelta(days=1) if target > 1 else nearest + timedelta(days=2)
        elif nearest.weekday() == 6:  # Sunday: Monday after, unless that leaves the month
            nearest = nearest + timedelta(days=1) if target < last else nearest - timedelta(days=2)
        return day == nearest
    return day.day in _values("", "day-of-month", field, 1, 31)


def _dow_matches(field: str, day: date) -> bool:
    last = calendar.monthrange(day.year, day.month)[1]
    if field == "L":
        return _weekday(day) == 7
    if match := re.fullmatch(r"(\w+)L", field):
        return _weekday(day) == _number("", "", match[1], 1, 7, DAYS) and day.day + 7 > last
    if match := re.fullmatch(r"(\w+)#([0-9])", field):
        wanted = _number("", "", match[1], 1, 7, DAYS)
        return _weekday(day) == wanted and (day.day - 1) // 7 + 1 == int(match[2])
    return _weekday(day) in _values("", "day-of-week", field, 1, 7, DAYS)
