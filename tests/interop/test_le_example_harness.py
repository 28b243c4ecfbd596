"""The Go harness itself: reading le-example's klog lines, validating its timings (no server)."""

from __future__ import annotations

import pytest
from _go import GoEventKind, GoTimings, parse_klog_line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'I1126 19:49:04.868191   22457 leaderelection.go:258] "Attempting to acquire leader'
            ' lease..." lock="default/x2"',
            (GoEventKind.ATTEMPTING, ""),
        ),
        (
            'I1126 19:49:06.377602   22475 leaderelection.go:481] "Lease is held by and has not'
            ' yet expired" lock="default/x2" holder="py-1"',
            (GoEventKind.POLL, "py-1"),
        ),
        (
            "I0101 00:00:00.000001       7 leaderelection.go:253] lock is held by go-a and has"
            " not yet expired",
            (GoEventKind.POLL, "go-a"),
        ),
        (
            'I1126 19:49:04.879507   22457 leaderelection.go:272] "Successfully acquired lease"'
            ' lock="default/x2"',
            (GoEventKind.ACQUIRED, ""),
        ),
        ("successfully acquired lease default/x2", (GoEventKind.ACQUIRED, "")),
        (
            "I1126 19:49:04.879674   22457 main.go:93] Controller loop...",
            (GoEventKind.WORKING, ""),
        ),
        (
            "I1126 19:49:06.377676   22475 main.go:170] new leader elected: py-1",
            (GoEventKind.NEW_LEADER, "py-1"),
        ),
        (
            "I1126 19:49:08.360664   22475 main.go:110] Received termination, signaling shutdown",
            (GoEventKind.TERMINATING, ""),
        ),
        (
            "I1126 19:49:08.360712   22475 main.go:152] leader lost: go-b",
            (GoEventKind.STOPPED, "go-b"),
        ),
        (
            'E1126 19:49:08.360712   22475 leaderelection.go:297] "Failed to renew lease"'
            ' lock="default/x2" err="timed out waiting for the condition"',
            (GoEventKind.RENEW_FAILED, ""),
        ),
        (
            'I1126 19:47:29.896718   19730 envvar.go:195] "Feature gate default state"'
            ' feature="AtomicFIFO" enabled=true',
            None,
        ),
        ("I1126 19:49:08.360718   22475 main.go:160] No cleanup needed", None),
    ],
)
def test_klog_lines_become_events(line: str, expected: tuple[GoEventKind, str] | None) -> None:
    assert parse_klog_line(line) == expected


def test_timings_are_validated_as_client_go_validates_them() -> None:
    timings = GoTimings(lease_duration=6.0, renew_deadline=4.0, retry_period=2.5)
    assert timings.flags() == ["--lease-duration=6s", "--renew-deadline=4s", "--retry-period=2.5s"]
    assert timings.record_seconds == 6
    assert GoTimings(2.5, 2.0, 0.5).record_seconds == 2  # client-go truncates
    with pytest.raises(ValueError, match="reject"):
        GoTimings(lease_duration=4.0, renew_deadline=4.0, retry_period=0.5)
    with pytest.raises(ValueError, match="reject"):
        GoTimings(lease_duration=4.0, renew_deadline=0.6, retry_period=0.5)
