"""Timestamps as Go's ``time.Parse`` and ``time.Format`` treat them (the Lease API's layouts).

``metav1.MicroTime`` (``acquireTime``, ``renewTime``) parses with
``2006-01-02T15:04:05.000000Z07:00`` (exactly six fractional digits); ``metav1.Time``
(``creationTimestamp``, ``managedFields[].time``) with RFC 3339 ``2006-01-02T15:04:05Z07:00``.
Errors carry Go's exact text, e.g. ``parsing time "2024-05-06T07:08:09Z" as
"2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as ".000000"``.

A parsed instant is an :class:`Instant` (seconds since the Unix epoch plus nanoseconds), which
covers every year Go accepts (0000-9999) where :class:`datetime.datetime` does not.
"""

from __future__ import annotations

import dataclasses
import datetime

from .gojson import go_quote

__all__ = ["MICRO_LAYOUT", "RFC3339_LAYOUT", "GoTimeError", "Instant", "parse_go_time"]

MICRO_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"
RFC3339_LAYOUT = "2006-01-02T15:04:05Z07:00"

# The layouts split into Go's chunks: (literal prefix, standard element).
_CHUNKS: dict[str, tuple[tuple[str, str], ...]] = {
    MICRO_LAYOUT: (
        ("", "2006"),
        ("-", "01"),
        ("-", "02"),
        ("T", "15"),
        (":", "04"),
        (":", "05"),
        ("", ".000000"),
        ("", "Z07:00"),
    ),
}
_CHUNKS[RFC3339_LAYOUT] = tuple(chunk for chunk in _CHUNKS[MICRO_LAYOUT] if chunk[1] != ".000000")


class GoTimeError(ValueError):
    """Raised when a timestamp does not parse; the message is Go's ``*time.ParseError`` text."""


class _Bad(Exception):
    """Go's internal ``errBad``: the element did not match."""


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Instant:
    """A UTC instant: whole seconds since 1970-01-01T00:00:00Z and nanoseconds within it."""

    seconds: int
    nanos: int = 0

    ZERO_SECONDS = -62135596800  # 0001-01-01T00:00:00Z, Go's zero time.Time

    @classmethod
    def from_datetime(cls, when: datetime.datetime) -> Instant:
        """The instant of an aware datetime."""
        delta = when - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return cls(delta.days * 86400 + delta.seconds, delta.microseconds * 1000)

    @property
    def is_zero(self) -> bool:
        """True for Go's zero time (``0001-01-01T00:00:00Z``), which encodes as JSON ``null``."""
        return self.seconds == self.ZERO_SECONDS and self.nanos == 0

    def format_micro(self) -> str:
        """``2006-01-02T15:04:05.000000Z`` in UTC (``metav1.MicroTime`` output)."""
        return f"{self._date_time()}.{self.nanos // 1000:06d}Z"

    def format_seconds(self) -> str:
        """``2006-01-02T15:04:05Z`` in UTC (``metav1.Time`` output)."""
        return f"{self._date_time()}Z"

    def _date_time(self) -> str:
        days, rem = divmod(self.seconds, 86400)
        year, month, day = _civil_from_days(days)
        hour, rem = divmod(rem, 3600)
        minute, second = divmod(rem, 60)
        return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"


def _days_from_civil(year: int, month: int, day: int) -> int:
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    year = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return year + (month <= 2), month, day


def _days_in(month: int, year: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _is_digit(value: str, i: int) -> bool:
    return i < len(value) and "0" <= value[i] <= "9"


def _getnum(value: str, fixed: bool) -> tuple[int, str]:
    if not _is_digit(value, 0):
        raise _Bad
    if not _is_digit(value, 1):
        if fixed:
            raise _Bad
        return int(value[0]), value[1:]
    return int(value[:2]), value[2:]


def _atoi(text: str) -> int:
    neg = False
    if text and text[0] in "+-":
        neg = text[0] == "-"
        text = text[1:]
    if not text or not text.isdigit() or not text.isascii():
        raise _Bad
    return -int(text) if neg else int(text)


def _error(layout: str, value: str, elem_value: str, elem_layout: str) -> GoTimeError:
    return GoTimeError(
        f"parsing time {go_quote(value)} as {go_quote(layout)}: cannot parse "
        f"{go_quote(elem_value)} as {go_quote(elem_layout)}"
    )


def _range_error(value: str, what: str) -> GoTimeError:
    return GoTimeError(f"parsing time {go_quote(value)}: {what} out of range")


def _element(std: str, rest: str, layout: str, fields: dict[str, int]) -> tuple[str, str]:
    """Parse one standard element into ``fields``; return what remains and a range error.

    Raises:
        _Bad: the element does not match (Go's ``errBad``).
    """
    if std == "2006":
        if len(rest) < 4 or not _is_digit(rest, 0):
            raise _Bad
        fields["year"] = _atoi(rest[:4])
        return rest[4:], ""
    if std in _TWO_DIGIT:
        name, fixed, low, high = _TWO_DIGIT[std]
        value, rest = _getnum(rest, fixed)
        fields[name] = value
        if not low <= value <= high:
            return rest, name
        if (
            std == "05"
            and layout == RFC3339_LAYOUT
            and rest[:1] in (".", ",")
            and _is_digit(rest, 1)
        ):
            n = 2
            while _is_digit(rest, n):
                n += 1
            fields["nanos"], what = _nanoseconds(rest, n)
            return rest[n:], what
        return rest, ""
    if std == ".000000":
        if len(rest) < 7:
            raise _Bad
        fields["nanos"], what = _nanoseconds(rest, 7)
        return rest[7:], what
    return _zone(rest, fields)


def _zone(rest: str, fields: dict[str, int]) -> tuple[str, str]:
    """``Z07:00``: ``Z`` or ``±hh:mm``."""
    if rest[:1] == "Z":
        return rest[1:], ""
    if len(rest) < 6 or rest[3] != ":":
        raise _Bad
    sign, hh, mm, rest = rest[0], rest[1:3], rest[4:6], rest[6:]
    hours, _ = _getnum(hh, True)
    minutes, _ = _getnum(mm, True)
    what = ""
    if hours > 24:
        what = "time zone offset hour"
    if minutes > 60:
        what = "time zone offset minute"
    if sign not in "+-" and not what:
        raise _Bad
    fields["offset"] = (hours * 60 + minutes) * 60 * (1 if sign == "+" else -1)
    return rest, what


# element -> (field, fixed width, lowest, highest)
_TWO_DIGIT = {
    "01": ("month", True, 1, 12),
    "02": ("day", True, 0, 99),
    "15": ("hour", False, 0, 23),
    "04": ("minute", True, 0, 59),
    "05": ("second", True, 0, 59),
}


def parse_go_time(value: str, layout: str) -> Instant:
    """Parse ``value`` with Go layout ``layout`` (:data:`MICRO_LAYOUT` or :data:`RFC3339_LAYOUT`).

    Raises:
        GoTimeError: with Go's message.
    """
    rest = value
    fields = dict.fromkeys(("year", "month", "day", "hour", "minute", "second", "nanos"), 0)
    fields["offset"] = 0
    for prefix, std in _CHUNKS[layout]:
        for expected in prefix:
            if not rest or rest[0] != expected:
                raise _error(layout, value, rest, prefix)
            rest = rest[1:]
        try:
            remaining, range_what = _element(std, rest, layout, fields)
        except _Bad:
            raise _error(layout, value, rest, std) from None
        if range_what:
            raise _range_error(value, range_what)
        rest = remaining
    if rest:
        raise GoTimeError(f"parsing time {go_quote(value)}: extra text: {go_quote(rest)}")
    year, month, day = fields["year"], fields["month"], fields["day"]
    if day < 1 or day > _days_in(month, year):
        raise _range_error(value, "day")
    seconds = (
        _days_from_civil(year, month, day) * 86400
        + fields["hour"] * 3600
        + fields["minute"] * 60
        + fields["second"]
    )
    return Instant(seconds - fields["offset"], fields["nanos"])


def _nanoseconds(value: str, nbytes: int) -> tuple[int, str]:
    if value[0] not in ".,":
        raise _Bad
    nbytes = min(nbytes, 10)
    ns = _atoi(value[1:nbytes])
    if ns < 0:
        return 0, "fractional second"
    for _ in range(nbytes, 10):
        ns *= 10
    return ns, ""
