"""The leader-election record and its encoding as a Lease spec: pure functions, no I/O.

The record is what client-go's ``LeaderElectionRecord`` is, field for field, so a Go and a
Python candidate can share one Lease. Times are ``MicroTime``: the API server parses them with
Go's layout ``2006-01-02T15:04:05.000000Z07:00``, which demands exactly six fractional digits
(``datetime.isoformat()`` drops them when ``microsecond == 0``, and the server answers 400), so
we format and parse them ourselves.

Decoding never raises on a malformed spec: a Lease written by someone else is data, not a
contract. Whatever cannot be read is left out of the record and named in ``problems``; the
elector decides how much of such a record to trust.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = [
    "LeaseRecord",
    "coordination_kept",
    "format_micro_time",
    "lease_duration_seconds",
    "parse_micro_time",
    "record_from_spec",
    "spec_from_record",
]

# Exactly what Go's time.Parse accepts for the layout "2006-01-02T15:04:05.000000Z07:00".
_MICRO_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{6})"
    r"(?:(Z)|([+-])([0-9]{2}):([0-9]{2}))"
)


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The leader-election fields of a Lease spec.

    Attributes:
        holder_identity: the holder; ``""`` means the lease is free (released or never held).
        lease_duration_seconds: how long the holder's claim lasts after each renewal, as the
            holder wrote it; ``None`` when missing or invalid.
        acquire_time: when the holder acquired the lease (for people; never used to decide).
        renew_time: when the holder last renewed (for people; never used to decide).
        lease_transitions: how many times the holder has changed.
        problems: what could not be read from the spec, one phrase each; empty when well formed.
        strategy: ``spec.strategy``: set when the Lease is under coordinated leader election
            (KEP-4355), by its controller or a coordinated candidate; ``None`` otherwise.
        preferred_holder: ``spec.preferredHolder``: the candidate the coordinated-election
            controller wants to hold the Lease next (the holder should step down).
    """

    holder_identity: str = ""
    lease_duration_seconds: int | None = None
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    lease_transitions: int = 0
    problems: tuple[str, ...] = ()
    strategy: str | None = None
    preferred_holder: str | None = None

    @property
    def is_free(self) -> bool:
        """True when nobody holds the lease: it may be acquired at once."""
        return self.holder_identity == ""


def format_micro_time(moment: datetime) -> str:
    """Format an aware datetime as a Kubernetes MicroTime: UTC, six fractional digits, ``Z``.

    Raises:
        ValueError: if ``moment`` is naive (its instant would be a guess).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"MicroTime needs an aware datetime, got naive {moment!r}")
    utc = moment.astimezone(timezone.utc)
    # Explicit fields: strftime("%Y") does not zero-pad years before 1000, Go's layout does.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}Z"
    )


def parse_micro_time(text: str) -> datetime:
    """Parse a Kubernetes MicroTime exactly as the API server does; returns an aware UTC datetime.

    Raises:
        ValueError: unless ``text`` has six fractional digits and ``Z`` or a ``±HH:MM`` offset.
    """
    match = _MICRO_TIME.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a MicroTime (expected YYYY-MM-DDTHH:MM:SS.ffffff and Z or ±HH:MM)"
        )
    year, month, day, hour, minute, second, micros, zulu, sign, off_h, off_m = match.groups()
    if zulu:
        tz = timezone.utc
    else:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), int(micros), tz
        )
        return moment.astimezone(timezone.utc)
    except (ValueError, OverflowError) as exc:  # day 31 of April; an offset past year 1/9999
        raise ValueError(f"{text!r} is not a valid MicroTime: {exc}") from None


def lease_duration_seconds(seconds: float) -> int:
    """The whole ``leaseDurationSeconds`` written for a duration: rounded up, at least 1.

    Rounding up (client-go truncates) never advertises a shorter claim than the one we keep.
    """
    return max(1, math.ceil(seconds))


def record_from_spec(spec: object) -> LeaseRecord:
    """Read the record from a Lease's ``spec`` (a decoded JSON value), never raising."""
    if not isinstance(spec, Mapping):
        problem = "spec is missing" if spec is None else f"spec is not an object: {spec!r:.60}"
        return LeaseRecord(problems=(problem,))
    problems: list[str] = []

    holder = spec.get("holderIdentity")
    if holder is None:
        holder = ""
    elif not isinstance(holder, str):
        problems.append(f"holderIdentity is not a string: {holder!r:.60}")
        holder = repr(holder)

    duration = spec.get("leaseDurationSeconds")
    if duration is None:
        if holder:
            problems.append("leaseDurationSeconds is missing")
    elif not _is_int(duration) or duration < 1:
        problems.append(f"leaseDurationSeconds is not a positive integer: {duration!r:.60}")
        duration = None

    transitions = spec.get("leaseTransitions", 0)
    if transitions is None:
        transitions = 0
    elif not _is_int(transitions) or transitions < 0:
        problems.append(f"leaseTransitions is not a non-negative integer: {transitions!r:.60}")
        transitions = 0

    acquired = _read_time(spec, "acquireTime", problems)
    renewed = _read_time(spec, "renewTime", problems)
    strategy = _read_name(spec, "strategy", problems)
    preferred = _read_name(spec, "preferredHolder", problems)
    return LeaseRecord(
        holder_identity=holder,
        lease_duration_seconds=duration,
        acquire_time=acquired,
        renew_time=renewed,
        lease_transitions=transitions,
        problems=tuple(problems),
        strategy=strategy,
        preferred_holder=preferred,
    )


def spec_from_record(record: LeaseRecord) -> dict[str, Any]:
    """The Lease ``spec`` for a record, as client-go writes it.

    ``holderIdentity`` and ``leaseTransitions`` are always present (an empty holder is a
    release, not an omission); ``strategy`` and ``preferredHolder`` only when set.
    """
    spec: dict[str, Any] = {"holderIdentity": record.holder_identity}
    if record.lease_duration_seconds is not None:
        spec["leaseDurationSeconds"] = record.lease_duration_seconds
    if record.acquire_time is not None:
        spec["acquireTime"] = format_micro_time(record.acquire_time)
    if record.renew_time is not None:
        spec["renewTime"] = format_micro_time(record.renew_time)
    spec["leaseTransitions"] = record.lease_transitions
    if record.strategy:
        spec["strategy"] = record.strategy
    if record.preferred_holder:
        spec["preferredHolder"] = record.preferred_holder
    return spec


def coordination_kept(record: LeaseRecord, base: LeaseRecord, *, new_term: bool) -> LeaseRecord:
    """``record`` carrying ``base``'s coordinated-election fields, so that no write of ours
    wipes what the coordinated-election controller wrote (client-go's plain renewals do).

    A renewal or a release keeps ``strategy`` and ``preferredHolder``; a new term keeps the
    strategy but not the preferred holder, which was meant for the term that ended (the
    controller drops it too when it names the next holder).
    """
    return replace(
        record,
        strategy=base.strategy,
        preferred_holder=None if new_term else base.preferred_holder,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_name(spec: Mapping[str, Any], field: str, problems: list[str]) -> str | None:
    value = spec.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    problems.append(f"{field} is not a string: {value!r:.60}")
    return None


def _read_time(spec: Mapping[str, Any], field: str, problems: list[str]) -> datetime | None:
    value = spec.get(field)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse_micro_time(value)
        except ValueError:
            pass
    problems.append(f"{field} is not a MicroTime: {value!r:.60}")
    return None
