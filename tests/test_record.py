"""The record codec: MicroTime, leaseDurationSeconds, spec <-> LeaseRecord; pure, no I/O."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from leaderelect._record import (
    LeaseRecord,
    coordination_kept,
    format_micro_time,
    lease_duration_seconds,
    parse_micro_time,
    record_from_spec,
    spec_from_record,
)

UTC = timezone.utc
PLUS_2 = timezone(timedelta(hours=2))
MINUS_0530 = timezone(-timedelta(hours=5, minutes=30))

T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
T1 = datetime(2024, 5, 6, 7, 8, 11, 654321, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# MicroTime
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(T0, "2024-05-06T07:08:09.123456Z", id="utc is written with six digits and Z"),
        pytest.param(
            datetime(2024, 5, 6, 7, 8, 9, 0, tzinfo=UTC),
            "2024-05-06T07:08:09.000000Z",
            id="microsecond zero still gets six digits",
        ),
        pytest.param(
            datetime(2024, 5, 6, 7, 8, 9, 5, tzinfo=UTC),
            "2024-05-06T07:08:09.000005Z",
            id="leading zeros of the fraction are kept",
        ),
        pytest.param(
            datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=PLUS_2),
            "2024-05-06T05:08:09.123456Z",
            id="a positive offset is normalised to utc",
        ),
        pytest.param(
            datetime(2024, 12, 31, 22, 0, 0, 1, tzinfo=MINUS_0530),
            "2025-01-01T03:30:00.000001Z",
            id="a negative half-hour offset crosses the year in utc",
        ),
    ],
)
def test_format_micro_time(moment: datetime, text: str) -> None:
    assert format_micro_time(moment) == text


def test_format_micro_time_rejects_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_micro_time(datetime(2024, 5, 6, 7, 8, 9))  # noqa: DTZ001


def test_format_micro_time_pads_years_below_1000() -> None:
    assert format_micro_time(datetime(5, 1, 1, tzinfo=UTC)) == "0005-01-01T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        pytest.param("2024-05-06T07:08:09.123456Z", T0, id="six digits and Z"),
        pytest.param(
            "2024-05-06T07:08:09.000000Z",
            datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
            id="six zero digits",
        ),
        pytest.param(
            "2024-05-06T07:08:09.123456+02:00",
            datetime(2024, 5, 6, 5, 8, 9, 123456, tzinfo=UTC),
            id="a positive offset is normalised to utc",
        ),
        pytest.param(
            "2024-05-06T07:08:09.123456-05:30",
            datetime(2024, 5, 6, 12, 38, 9, 123456, tzinfo=UTC),
            id="a negative half-hour offset is normalised to utc",
        ),
        pytest.param(
            "2024-02-29T23:59:59.999999Z",
            datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
            id="a leap day at the last microsecond",
        ),
    ],
)
def test_parse_micro_time_accepts(text: str, moment: datetime) -> None:
    parsed = parse_micro_time(text)
    assert parsed == moment
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        # The rejection table of kube-apiserver-responses.md (every one of these is a 400 there).
        pytest.param("2024-05-06T07:08:09Z", id="no fraction is rejected as the server does"),
        pytest.param("2024-05-06T07:08:09.123Z", id="three digits are rejected"),
        pytest.param("2024-05-06T07:08:09.123456789Z", id="nine digits are rejected"),
        pytest.param("2024-05-06T07:08:09.5+02:00", id="one digit with an offset is rejected"),
        pytest.param("2024-05-06T07:08:09+02:00", id="an offset without a fraction is rejected"),
        pytest.param("2024-05-06T07:08:09.1234567-05:30", id="seven digits are rejected"),
        pytest.param("yesterday", id="a word is rejected"),
        pytest.param("2024-01-01", id="a date alone is rejected"),
        # Go's layout is literal about the rest too.
        pytest.param("", id="an empty string is rejected"),
        pytest.param("2024-05-06T07:08:09.123456", id="a missing zone is rejected"),
        pytest.param("2024-05-06T07:08:09.123456z", id="a lowercase z is rejected"),
        pytest.param("2024-05-06 07:08:09.123456Z", id="a space instead of T is rejected"),
        pytest.param("2024-05-06t07:08:09.123456Z", id="a lowercase t is rejected"),
        pytest.param("2024-05-06T07:08:09.123456+0200", id="an offset without colon is rejected"),
        pytest.param(" 2024-05-06T07:08:09.123456Z", id="leading whitespace is rejected"),
        pytest.param("2024-05-06T07:08:09.123456Z ", id="trailing whitespace is rejected"),
        pytest.param("2024-13-06T07:08:09.123456Z", id="month 13 is rejected"),
        pytest.param("2023-02-29T07:08:09.123456Z", id="february 29 of a common year is rejected"),
        pytest.param("2024-05-06T24:08:09.123456Z", id="hour 24 is rejected"),
        pytest.param("2024-05-06T07:08:60.123456Z", id="second 60 is rejected"),
    ],
)
def test_parse_micro_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_micro_time(text)


def test_parse_micro_time_rejects_non_ascii_digits() -> None:
    with pytest.raises(ValueError):
        parse_micro_time("2024-05-06T07:08:09.12345\u0666Z")  # ARABIC-INDIC DIGIT SIX


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(T0, id="an ordinary utc time"),
        pytest.param(datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC), id="microsecond zero"),
        pytest.param(datetime(2024, 5, 6, 7, 8, 9, 999999, tzinfo=UTC), id="the last microsecond"),
        pytest.param(datetime(2024, 5, 6, 1, 0, 0, 10, tzinfo=PLUS_2), id="an offset time"),
        pytest.param(datetime(1970, 1, 1, tzinfo=UTC), id="the unix epoch"),
        pytest.param(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), id="the last moment"),
    ],
)
def test_micro_time_round_trips_to_the_same_instant(moment: datetime) -> None:
    text = format_micro_time(moment)
    assert parse_micro_time(text) == moment
    assert format_micro_time(parse_micro_time(text)) == text


# --------------------------------------------------------------------------------------------
# leaseDurationSeconds
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "whole"),
    [
        pytest.param(15.0, 15, id="whole seconds stay as they are"),
        pytest.param(14.2, 15, id="a fraction rounds up, never advertising a shorter claim"),
        pytest.param(15.000001, 16, id="a tiny excess still rounds up"),
        pytest.param(1.0, 1, id="one second is one"),
        pytest.param(0.4, 1, id="under a second becomes one, which the server accepts"),
        pytest.param(0.0, 1, id="zero becomes one, never the 0 the server rejects"),
        pytest.param(3600.5, 3601, id="an hour and a half second rounds up"),
    ],
)
def test_lease_duration_seconds(seconds: float, whole: int) -> None:
    assert lease_duration_seconds(seconds) == whole


# --------------------------------------------------------------------------------------------
# record_from_spec: never raises; whatever cannot be read becomes a problem
# --------------------------------------------------------------------------------------------

GOOD_SPEC: dict[str, Any] = {
    "holderIdentity": "a",
    "leaseDurationSeconds": 15,
    "acquireTime": "2024-05-06T07:08:09.123456Z",
    "renewTime": "2024-05-06T07:08:11.654321Z",
    "leaseTransitions": 3,
}
GOOD_RECORD = LeaseRecord(
    holder_identity="a",
    lease_duration_seconds=15,
    acquire_time=T0,
    renew_time=T1,
    lease_transitions=3,
)


def with_field(field: str, value: object) -> dict[str, Any]:
    """GOOD_SPEC with ``field`` set to ``value``."""
    return {**GOOD_SPEC, field: value}


def without(*fields: str) -> dict[str, Any]:
    """GOOD_SPEC without ``fields``."""
    return {k: v for k, v in GOOD_SPEC.items() if k not in fields}


def test_record_from_a_well_formed_spec_has_no_problems() -> None:
    assert record_from_spec(GOOD_SPEC) == GOOD_RECORD


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({}, LeaseRecord(), id="an empty spec is a free lease"),
        pytest.param(
            {"holderIdentity": "", "leaseDurationSeconds": 1, "leaseTransitions": 4},
            LeaseRecord(lease_duration_seconds=1, lease_transitions=4),
            id="a released lease is free",
        ),
        pytest.param(
            {"holderIdentity": None},
            LeaseRecord(),
            id="a null holder is the empty holder",
        ),
        pytest.param(
            without("leaseTransitions"),
            LeaseRecord(
                holder_identity="a", lease_duration_seconds=15, acquire_time=T0, renew_time=T1
            ),
            id="missing leaseTransitions is zero",
        ),
        pytest.param(
            with_field("leaseTransitions", None),
            LeaseRecord(
                holder_identity="a", lease_duration_seconds=15, acquire_time=T0, renew_time=T1
            ),
            id="null leaseTransitions is zero",
        ),
        pytest.param(
            without("acquireTime", "renewTime"),
            LeaseRecord(holder_identity="a", lease_duration_seconds=15, lease_transitions=3),
            id="missing times are None without a problem",
        ),
        pytest.param(
            {**GOOD_SPEC, "strategy": "OldestEmulationVersion", "preferredHolder": "b"},
            dataclasses.replace(
                GOOD_RECORD, strategy="OldestEmulationVersion", preferred_holder="b"
            ),
            id="coordinated election fields are read",
        ),
    ],
)
def test_record_from_spec_without_problems(spec: dict[str, Any], expected: LeaseRecord) -> None:
    assert record_from_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "problem", "fields"),
    [
        # The spec itself.
        pytest.param(None, "spec is missing", {}, id="a missing spec"),
        pytest.param([], "spec is not an object", {}, id="a spec that is a list"),
        pytest.param("a", "spec is not an object", {}, id="a spec that is a string"),
        pytest.param(15, "spec is not an object", {}, id="a spec that is a number"),
        pytest.param(True, "spec is not an object", {}, id="a spec that is a boolean"),
        # holderIdentity: a wrong type is not free (someone wrote something there).
        pytest.param(
            with_field("holderIdentity", 7),
            "holderIdentity is not a string",
            {"holder_identity": "7", "lease_duration_seconds": 15},
            id="a numeric holder is kept as text and is not free",
        ),
        pytest.param(
            with_field("holderIdentity", {"name": "a"}),
            "holderIdentity is not a string",
            {"lease_duration_seconds": 15},
            id="an object holder",
        ),
        # leaseDurationSeconds.
        pytest.param(
            without("leaseDurationSeconds"),
            "leaseDurationSeconds is missing",
            {"holder_identity": "a", "lease_duration_seconds": None, "lease_transitions": 3},
            id="a held lease without leaseDurationSeconds",
        ),
        pytest.param(
            with_field("leaseDurationSeconds", None),
            "leaseDurationSeconds is missing",
            {"holder_identity": "a", "lease_duration_seconds": None},
            id="a held lease with null leaseDurationSeconds",
        ),
        pytest.param(
            with_field("leaseDurationSeconds", 0),
            "leaseDurationSeconds is not a positive integer: 0",
            {"lease_duration_seconds": None},
            id="zero leaseDurationSeconds",
        ),
        pytest.param(
            with_field("leaseDurationSeconds", -5),
            "leaseDurationSeconds is not a positive integer: -5",
            {"lease_duration_seconds": None},
            id="negative leaseDurationSeconds",
        ),
        pytest.param(
            with_field("leaseDurationSeconds", "15"),
            "leaseDurationSeconds is not a positive integer: '15'",
            {"lease_duration_seconds": None},
            id="leaseDurationSeconds as a string",
        ),
        pytest.param(
            with_field("leaseDurationSeconds", 15.5),
            "leaseDurationSeconds is not a positive integer: 15.5",
            {"lease_duration_seconds": None},
            id="fractional leaseDurationSeconds",
        ),
        pytest.param(
            with_field("leaseDurationSeconds", True),
            "leaseDurationSeconds is not a positive integer: True",
            {"lease_duration_seconds": None},
            id="boolean leaseDurationSeconds is not the integer 1",
        ),
        pytest.param(
            with_field("leaseDurationSeconds", [15]),
            "leaseDurationSeconds is not a positive integer",
            {"lease_duration_seconds": None},
            id="leaseDurationSeconds in a list",
        ),
        # leaseTransitions.
        pytest.param(
            with_field("leaseTransitions", -1),
            "leaseTransitions is not a non-negative integer: -1",
            {"lease_transitions": 0},
            id="negative leaseTransitions",
        ),
        pytest.param(
            with_field("leaseTransitions", "3"),
            "leaseTransitions is not a non-negative integer: '3'",
            {"lease_transitions": 0},
            id="leaseTransitions as a string",
        ),
        pytest.param(
            with_field("leaseTransitions", 2.0),
            "leaseTransitions is not a non-negative integer: 2.0",
            {"lease_transitions": 0},
            id="leaseTransitions as a float",
        ),
        pytest.param(
            with_field("leaseTransitions", False),
            "leaseTransitions is not a non-negative integer: False",
            {"lease_transitions": 0},
            id="boolean leaseTransitions",
        ),
        # Times.
        pytest.param(
            with_field("renewTime", "yesterday"),
            "renewTime is not a MicroTime: 'yesterday'",
            {"renew_time": None, "acquire_time": T0, "holder_identity": "a"},
            id="a garbage renewTime leaves the rest readable",
        ),
        pytest.param(
            with_field("acquireTime", "2024-05-06T07:08:09Z"),
            "acquireTime is not a MicroTime",
            {"acquire_time": None, "renew_time": T1},
            id="an acquireTime without fraction",
        ),
        pytest.param(
            with_field("renewTime", "2024-05-06T07:08:09.123456789Z"),
            "renewTime is not a MicroTime",
            {"renew_time": None},
            id="a renewTime with nanoseconds",
        ),
        pytest.param(
            with_field("renewTime", 12345),
            "renewTime is not a MicroTime: 12345",
            {"renew_time": None},
            id="a numeric renewTime",
        ),
        pytest.param(
            with_field("acquireTime", {"seconds": 1}),
            "acquireTime is not a MicroTime",
            {"acquire_time": None},
            id="an object acquireTime",
        ),
        pytest.param(
            with_field("renewTime", "x" * 10_000),
            "renewTime is not a MicroTime",
            {"renew_time": None},
            id="a huge garbage time",
        ),
    ],
)
def test_record_from_malformed_spec_names_the_problem(
    spec: object, problem: str, fields: dict[str, Any]
) -> None:
    record = record_from_spec(spec)
    assert any(problem in p for p in record.problems), record.problems
    for name, value in fields.items():
        assert getattr(record, name) == value, name
    assert all(len(p) < 200 for p in record.problems), "problems quote at most a short excerpt"


def test_record_from_spec_collects_every_problem() -> None:
    record = record_from_spec(
        {
            "holderIdentity": "a",
            "leaseDurationSeconds": "x",
            "acquireTime": 1,
            "renewTime": "no",
            "leaseTransitions": -2,
        }
    )
    assert len(record.problems) == 4
    assert record.holder_identity == "a"
    assert not record.is_free


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("0001-01-01T00:30:00.000000+01:00", id="before year 1 in utc"),
        pytest.param("9999-12-31T23:59:59.999999-01:00", id="after year 9999 in utc"),
    ],
)
def test_record_from_spec_never_raises_on_out_of_range_times(text: str) -> None:
    record = record_from_spec(with_field("renewTime", text))
    assert record.renew_time is None
    assert record.problems


@pytest.mark.parametrize(
    ("holder", "free"),
    [
        pytest.param("", True, id="the empty holder is free"),
        pytest.param("a", False, id="a named holder is not free"),
    ],
)
def test_is_free(holder: str, free: bool) -> None:
    assert LeaseRecord(holder_identity=holder).is_free is free


# --------------------------------------------------------------------------------------------
# spec_from_record: what client-go writes (client-go-semantics.md §1.9)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "spec"),
    [
        pytest.param(
            LeaseRecord(
                holder_identity="me",
                lease_duration_seconds=15,
                acquire_time=T0,
                renew_time=T0,
                lease_transitions=0,
            ),
            {
                "holderIdentity": "me",
                "leaseDurationSeconds": 15,
                "acquireTime": "2024-05-06T07:08:09.123456Z",
                "renewTime": "2024-05-06T07:08:09.123456Z",
                "leaseTransitions": 0,
            },
            id="create writes leaseTransitions 0 explicitly",
        ),
        pytest.param(
            LeaseRecord(
                holder_identity="me",
                lease_duration_seconds=15,
                acquire_time=T0,
                renew_time=T0,
                lease_transitions=5,
            ),
            {
                "holderIdentity": "me",
                "leaseDurationSeconds": 15,
                "acquireTime": "2024-05-06T07:08:09.123456Z",
                "renewTime": "2024-05-06T07:08:09.123456Z",
                "leaseTransitions": 5,
            },
            id="a takeover writes the incremented transitions",
        ),
        pytest.param(
            LeaseRecord(
                holder_identity="me",
                lease_duration_seconds=15,
                acquire_time=T0,
                renew_time=T1,
                lease_transitions=5,
            ),
            {
                "holderIdentity": "me",
                "leaseDurationSeconds": 15,
                "acquireTime": "2024-05-06T07:08:09.123456Z",
                "renewTime": "2024-05-06T07:08:11.654321Z",
                "leaseTransitions": 5,
            },
            id="a renewal keeps acquireTime and moves renewTime",
        ),
        pytest.param(
            LeaseRecord(
                holder_identity="",
                lease_duration_seconds=1,
                acquire_time=T1,
                renew_time=T1,
                lease_transitions=5,
            ),
            {
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "acquireTime": "2024-05-06T07:08:11.654321Z",
                "renewTime": "2024-05-06T07:08:11.654321Z",
                "leaseTransitions": 5,
            },
            id="a release writes the empty holder and one second, not omitting them",
        ),
        pytest.param(
            LeaseRecord(
                holder_identity="me",
                lease_duration_seconds=15,
                acquire_time=datetime(2024, 5, 6, 9, 8, 9, tzinfo=PLUS_2),
                renew_time=datetime(2024, 5, 6, 9, 8, 9, tzinfo=PLUS_2),
            ),
            {
                "holderIdentity": "me",
                "leaseDurationSeconds": 15,
                "acquireTime": "2024-05-06T07:08:09.000000Z",
                "renewTime": "2024-05-06T07:08:09.000000Z",
                "leaseTransitions": 0,
            },
            id="times are written in utc with six digits even at microsecond zero",
        ),
    ],
)
def test_spec_from_record_writes_what_client_go_writes(
    record: LeaseRecord, spec: dict[str, Any]
) -> None:
    written = spec_from_record(record)
    assert written == spec
    assert list(written) == list(spec), "same key order as client-go's JSON"
    assert "strategy" not in written
    assert "preferredHolder" not in written


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(GOOD_RECORD, id="a held lease"),
        pytest.param(
            LeaseRecord(lease_duration_seconds=1, acquire_time=T1, renew_time=T1),
            id="a released lease",
        ),
        pytest.param(
            LeaseRecord(
                holder_identity="pod-7_0f0e",
                lease_duration_seconds=60,
                acquire_time=datetime(2024, 5, 6, tzinfo=UTC),
                renew_time=datetime(2024, 5, 6, tzinfo=UTC),
                lease_transitions=2**31 - 1,
            ),
            id="microsecond zero and the largest int32 transitions",
        ),
    ],
)
def test_spec_round_trips_to_the_same_record(record: LeaseRecord) -> None:
    assert record_from_spec(spec_from_record(record)) == record


def test_coordinated_fields_round_trip_and_are_written_only_when_set() -> None:
    record = dataclasses.replace(
        GOOD_RECORD, strategy="OldestEmulationVersion", preferred_holder="b"
    )
    spec = spec_from_record(record)
    assert spec["strategy"] == "OldestEmulationVersion" and spec["preferredHolder"] == "b"
    assert record_from_spec(spec) == record
    assert "strategy" not in spec_from_record(GOOD_RECORD)
    assert "preferredHolder" not in spec_from_record(GOOD_RECORD)


def test_a_malformed_coordinated_field_is_a_problem_not_a_crash() -> None:
    record = record_from_spec({**GOOD_SPEC, "strategy": 7})
    assert record.strategy is None
    assert any("strategy is not a string" in problem for problem in record.problems)


def test_writes_keep_the_controllers_fields_and_a_new_term_drops_the_preferred_holder() -> None:
    base = dataclasses.replace(GOOD_RECORD, strategy="OldestEmulationVersion", preferred_holder="b")
    renewal = coordination_kept(GOOD_RECORD, base, new_term=False)
    assert (renewal.strategy, renewal.preferred_holder) == ("OldestEmulationVersion", "b")
    takeover = coordination_kept(GOOD_RECORD, base, new_term=True)
    assert (takeover.strategy, takeover.preferred_holder) == ("OldestEmulationVersion", None)
    assert coordination_kept(GOOD_RECORD, GOOD_RECORD, new_term=False) == GOOD_RECORD
