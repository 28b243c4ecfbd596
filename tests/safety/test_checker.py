"""The checker itself: each check passes a correct record and catches each kind of violation."""

from __future__ import annotations

import dataclasses
import datetime
import threading
from typing import Any

import pytest

from leaderelect import Timings
from leaderelect.testing import (
    ElectionViolation,
    LeadershipLog,
    WorkInterval,
    WriteRecord,
    check_election,
    check_lease_history,
    check_liveness,
    check_safety,
    liveness_bound,
)

TIMINGS = Timings(lease_duration=1.0, renew_deadline=0.6, retry_period=0.1)
BOUND = liveness_bound(TIMINGS)


def iv(candidate: str, start: float, end: float | None) -> WorkInterval:
    return WorkInterval(candidate, f"uid:{int(start)}", start, end)


def write(  # the durations are those of both the lease before and after
    time: float,
    user: str,
    before: str | None,
    after: str | None,
    rv: tuple[int | None, int],
    *,
    verb: str = "update",
    duration: Any = 1,
    name: str = "lease",
) -> WriteRecord:
    def lease(holder: str | None, renewed: str) -> dict[str, Any] | None:
        if holder is None:
            return None
        spec = {"holderIdentity": holder, "leaseDurationSeconds": duration, "renewTime": renewed}
        return {"spec": spec}

    return WriteRecord(
        time=time,
        timestamp=datetime.datetime.now(datetime.timezone.utc),
        user=user,
        verb=verb,
        namespace="default",
        name=name,
        resource_version_before=rv[0],
        resource_version_after=rv[1],
        holder_before=before,
        holder_after=after,
        lease_before=lease(before, "earlier") if rv[0] is not None else None,
        lease_after=lease(after, f"{time}"),
    )


class TestSafety:
    def test_handovers_without_overlap_pass_and_report_the_narrowest_gap(self) -> None:
        gap = check_safety([iv("a", 0, 1), iv("b", 1.25, 3), iv("a", 3.1, None)])
        assert gap == pytest.approx(0.1)

    def test_an_overlap_is_reported_with_both_intervals(self) -> None:
        with pytest.raises(ElectionViolation, match=r"two leaders at once for 0\.500s") as info:
            check_safety([iv("a", 0, 2), iv("b", 1.5, 3)], context="seed 7")
        assert str(info.value).startswith("seed 7: 1 violation(s)")
        assert "a [0.000, 2.000)" in str(info.value)

    def test_a_long_interval_overlapping_a_later_one_is_caught(self) -> None:
        # b sits inside a; c starts after b ended but while a still works.
        intervals = [iv("a", 0, 10), iv("b", 1, 2), iv("c", 3, 4)]
        with pytest.raises(ElectionViolation) as info:
            check_safety(intervals)
        assert len(info.value.findings) == 2

    def test_a_leader_still_working_overlaps_everything_after_it(self) -> None:
        with pytest.raises(ElectionViolation):
            check_safety([iv("a", 0, None), iv("b", 5, 6)])

    def test_tolerance_accepts_a_measured_overlap_within_it(self) -> None:
        gap = check_safety([iv("a", 0, 1.01), iv("b", 1.0, 2)], tolerance=0.02)
        assert gap == pytest.approx(-0.01)


class TestLiveness:
    def test_prompt_takeovers_pass(self) -> None:
        slowest = check_liveness(
            [iv("a", 0, 1), iv("b", 2.0, 5), iv("c", 5.5, None)], bound=BOUND, until=10
        )
        assert slowest == pytest.approx(1.0)

    def test_a_slow_takeover_fails(self) -> None:
        with pytest.raises(ElectionViolation, match=r"no leader from 1\.000 until 3\.000"):
            check_liveness([iv("a", 0, 1), iv("b", 3, None)], bound=BOUND, until=10)

    def test_no_leader_at_the_end_fails(self) -> None:
        with pytest.raises(ElectionViolation, match="until the end"):
            check_liveness([iv("a", 0, 1)], bound=BOUND, until=10)

    def test_no_leader_at_all_fails_from_since(self) -> None:
        with pytest.raises(ElectionViolation):
            check_liveness([], bound=BOUND, since=0, until=10)

    def test_an_excused_window_restarts_the_clock(self) -> None:
        # The lapse is 1 -> 4.2, but a fault lasted until 3: 1.2 s after it is within bound.
        check_liveness(
            [iv("a", 0, 1), iv("b", 4.2, None)], bound=BOUND, until=10, excused=[(0.5, 3)]
        )

    def test_an_unexcused_stretch_before_an_excuse_still_counts(self) -> None:
        # Leadership lapsed at 1; the fault only began at 3: a leader was owed by 1 + bound.
        with pytest.raises(ElectionViolation, match=r"without an excuse \(from 1\.000\)"):
            check_liveness(
                [iv("a", 0, 1), iv("b", 4.2, None)], bound=BOUND, until=10, excused=[(3, 3.5)]
            )

    def test_overlapping_excuses_are_merged(self) -> None:
        check_liveness(
            [iv("a", 0, 1), iv("b", 5, None)],
            bound=BOUND,
            until=10,
            excused=[(1, 3), (2.5, 4)],
        )


class TestLeaseHistory:
    def test_a_clean_history_counts_holder_changes(self) -> None:
        writes = [
            write(0.0, "a", None, "a", (None, 2), verb="create"),
            write(0.1, "a", "a", "a", (2, 3)),
            write(0.2, "a", "a", "", (3, 4)),  # a release
            write(0.21, "b", "", "b", (4, 5)),  # taken at once: it was free
            write(1.5, "c", "b", "c", (5, 6)),  # taken after b's claim of 1 s ran out
        ]
        assert check_lease_history(writes, lease="default/lease", fallback_duration=1) == 3

    def test_a_write_not_based_on_the_latest_version_is_a_clobber(self) -> None:
        writes = [
            write(0.0, "a", None, "a", (None, 2), verb="create"),
            write(0.1, "a", "a", "a", (2, 3)),
            write(2.0, "b", "a", "b", (2, 4)),  # based on 2, but 3 was the latest
        ]
        with pytest.raises(ElectionViolation, match=r"based on resourceVersion 2, not the latest"):
            check_lease_history(writes, lease="default/lease", fallback_duration=1)

    def test_a_takeover_before_the_claim_ran_out_is_caught(self) -> None:
        writes = [
            write(0.0, "a", None, "a", (None, 2), verb="create", duration=15),
            write(3.0, "b", "a", "b", (2, 3), duration=15),
        ]
        with pytest.raises(ElectionViolation, match=r"claim of 15\.000s had not run out"):
            check_lease_history(writes, lease="default/lease", fallback_duration=1)

    def test_a_fast_clock_is_tolerated_within_the_rate(self) -> None:
        writes = [
            write(0.0, "a", None, "a", (None, 2), verb="create", duration=10),
            write(9.2, "b", "a", "b", (2, 3), duration=10),
        ]
        check_lease_history(writes, lease="default/lease", fallback_duration=1, rate_tolerance=1.1)

    def test_a_write_of_metadata_alone_does_not_restart_the_claim(self) -> None:
        label = write(0.5, "admin", "a", "a", (3, 4))
        label = dataclasses.replace(label, lease_after=label.lease_before)
        writes = [
            write(0.0, "a", None, "a", (None, 2), verb="create"),
            write(0.2, "a", "a", "a", (2, 3)),
            label,
            write(1.3, "b", "a", "b", (4, 5)),  # 1.1 s after a's renewal: fine
        ]
        # (Counted from the label's write, b would have come 0.2 s early.)
        assert check_lease_history(writes, lease="default/lease", fallback_duration=1) == 2

    def test_a_malformed_duration_falls_back_to_ours(self) -> None:
        writes = [
            write(0.0, "a", None, "a", (None, 2), verb="create", duration="soon"),
            write(0.5, "b", "a", "b", (2, 3), duration="soon"),
        ]
        with pytest.raises(ElectionViolation, match=r"claim of 2\.000s"):
            check_lease_history(writes, lease="default/lease", fallback_duration=2)

    def test_recreated_after_delete_and_other_leases_are_fine(self) -> None:
        writes = [
            write(0.0, "a", None, "a", (None, 2), verb="create"),
            write(0.05, "x", None, "x", (None, 3), verb="create", name="other"),
            write(0.1, "admin", "a", None, (2, 4), verb="delete"),
            write(0.2, "b", None, "b", (None, 5), verb="create"),
        ]
        assert check_lease_history(writes, lease="default/lease", fallback_duration=1) == 2


def test_check_election_reports_every_finding_of_every_check() -> None:
    intervals = [iv("a", 0, 2), iv("b", 1.5, 3)]
    writes = [
        write(0.0, "a", None, "a", (None, 2), verb="create"),
        write(1.4, "b", "a", "b", (2, 3), duration=1),
        write(1.5, "c", "b", "c", (2, 4)),
    ]
    with pytest.raises(ElectionViolation) as info:
        check_election(
            intervals, writes, lease="default/lease", timings=TIMINGS, until=10, context="s1"
        )
    kinds = sorted(f.split(":")[0] for f in info.value.findings)
    assert kinds == ["history", "history", "liveness", "safety"]


def test_check_election_returns_the_figures() -> None:
    report = check_election(
        [iv("a", 0, 1), iv("b", 1.5, None)],
        [
            write(0.0, "a", None, "a", (None, 2), verb="create"),
            write(1.45, "b", "a", "b", (2, 3)),
        ],
        lease="default/lease",
        timings=TIMINGS,
        until=3,
    )
    assert (report.leaderships, report.handovers) == (2, 2)
    assert report.narrowest_gap == pytest.approx(0.5)
    assert report.slowest_takeover == pytest.approx(0.5)
    assert report.bound == pytest.approx(1.35)


def test_the_log_records_from_several_threads_on_one_clock() -> None:
    ticks = iter(range(100))
    log = LeadershipLog(clock=lambda: float(next(ticks)))

    def work(name: str) -> None:
        with log.working(name, "uid:1"):
            pass

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(log.intervals) == 4
    assert all(i.end is not None and i.end > i.start for i in log.intervals)
    assert log.running() == ()


def test_the_log_ends_an_interval_when_the_work_raises() -> None:
    log = LeadershipLog()
    with pytest.raises(RuntimeError), log.working("a", "uid:1"):
        raise RuntimeError("work failed")
    (interval,) = log.intervals
    assert interval.end is not None
