"""The checks of the faults of deployments (``_chaos.checks``): each passes a sound record and
catches what it is there for, on hand-made histories."""

from __future__ import annotations

import datetime
import functools
import math
from typing import Any

from _chaos.checks import (
    CandidateRecord,
    Journal,
    check_cancelled_takeovers_released,
    check_crowded_leaders,
    check_no_zombie_terms,
    check_silent_watches,
    check_terms,
    starts_term,
)

from leaderelect import Timings
from leaderelect.testing import RequestInfo, WorkInterval, WriteRecord

TIMINGS = Timings(lease_duration=1.0, renew_deadline=0.6, retry_period=0.1)
LEASE = "default/lease"
UID = "u1"


class History:
    """Writes of one Lease, each based on the one before."""

    def __init__(self) -> None:
        self.writes: list[WriteRecord] = []
        self._lease: dict[str, Any] | None = None
        self._rv = 0

    def write(
        self, time: float, user: str, holder: str | None, transitions: int = 0, verb: str = ""
    ) -> WriteRecord:
        """``holder`` None deletes the Lease; ``""`` writes it free."""
        before = self._lease
        self._rv += 1
        after: dict[str, Any] | None = None
        if holder is not None:
            uid = (before or {}).get("metadata", {}).get("uid", f"{UID}-{self._rv}")
            after = {
                "metadata": {"uid": uid, "resourceVersion": str(self._rv)},
                "spec": {
                    "holderIdentity": holder,
                    "leaseDurationSeconds": 1,
                    "leaseTransitions": transitions,
                    "renewTime": f"t{time}",
                },
            }
        verb = verb or ("delete" if after is None else "create" if before is None else "update")
        record = WriteRecord(
            time=time,
            timestamp=datetime.datetime.now(datetime.timezone.utc),
            user=user,
            verb=verb,
            namespace="default",
            name="lease",
            resource_version_before=None if before is None else self._rv - 1,
            resource_version_after=self._rv,
            holder_before=(before or {}).get("spec", {}).get("holderIdentity"),
            holder_after=(after or {}).get("spec", {}).get("holderIdentity"),
            lease_before=before,
            lease_after=after,
        )
        self._lease = after
        self.writes.append(record)
        return record

    def renew(self, start: float, end: float, user: str, holder: str, transitions: int) -> None:
        moment = start
        while moment < end:
            self.write(round(moment, 3), user, holder, transitions)
            moment += 0.1

    def uid(self) -> str:
        return str((self._lease or {}).get("metadata", {}).get("uid"))


def candidate(
    name: str,
    terms: dict[tuple[str, int], tuple[float, float | None]] | None = None,
    **fields: Any,
) -> CandidateRecord:
    intervals = {
        term: WorkInterval(name, f"{term[0]}:{term[1]}", start, end)
        for term, (start, end) in (terms or {}).items()
    }
    defaults: dict[str, Any] = {
        "identity": name,
        "watch": True,
        "hook_failures": 0.0,
        "losses": (),
        "hook_aborts": (),
        "hook_exits": (),
        "ended": None,
    }
    return CandidateRecord(name=name, terms=intervals, **(defaults | fields))


def watch_request(user: str) -> RequestInfo:
    return RequestInfo(
        method="GET",
        path="/apis/coordination.k8s.io/v1/namespaces/default/leases",
        query={"watch": "true"},
        verb="watch",
        resource="leases",
        namespace="default",
        name="lease",
        user=user,
        is_watch=True,
        remote=None,
    )


class TestTerms:
    def test_a_term_starts_at_a_create_a_takeover_or_new_transitions_only(self) -> None:
        h = History()
        created = h.write(0.0, "a", "a", 0)
        renewed = h.write(0.1, "a", "a", 0)
        released = h.write(0.2, "a", "", 0)
        taken = h.write(0.3, "b", "b", 1)
        same_identity = h.write(0.4, "c", "b", 2)
        assert [starts_term(w) for w in (created, renewed, released, taken, same_identity)] == [
            True,
            False,
            False,
            True,
            True,
        ]

    def test_a_process_sharing_an_identity_waits_for_the_others_claim(self) -> None:
        h = History()
        h.renew(0.0, 0.5, "w0", "web-0", 0)
        h.write(1.6, "w1", "web-0", 1)  # 1.2 s after w0's last renewal: fine
        assert check_terms(h.writes, lease=LEASE, fallback_duration=1.0) == []
        h.write(1.7, "w0", "web-0", 2)  # 0.1 s after w1's takeover: too soon
        (finding,) = check_terms(h.writes, lease=LEASE, fallback_duration=1.0)
        assert finding.startswith("terms: w0 started a term as 'web-0' at 1.700, 0.100s after")

    def test_the_same_process_may_start_a_new_term_at_once(self) -> None:
        h = History()
        h.write(0.0, "w0", "web-0", 0)
        h.write(0.1, "w0", "web-0", 1)
        assert check_terms(h.writes, lease=LEASE, fallback_duration=1.0) == []

    def test_a_lease_deleted_while_held_is_recreated_only_after_its_claim(self) -> None:
        h = History()
        h.renew(0.0, 0.5, "c0", "c0", 0)  # last change at 0.4
        h.write(0.6, "admin", None)
        h.write(0.7, "c1", "c1", 0)
        (finding,) = check_terms(h.writes, lease=LEASE, fallback_duration=1.0)
        assert "c1 created the Lease at 0.700, 0.300s after the deleted record of 'c0'" in finding
        late = History()
        late.renew(0.0, 0.5, "c0", "c0", 0)
        late.write(0.6, "admin", None)
        late.write(1.45, "c1", "c1", 0)
        assert check_terms(late.writes, lease=LEASE, fallback_duration=1.0) == []

    def test_event_loop_lag_shortens_a_deleted_records_claim(self) -> None:
        h = History()
        h.write(0.0, "c0", "c0", 0)
        h.write(0.7, "admin", None)
        h.write(0.8, "c1", "c1", 0)
        assert check_terms(h.writes, lease=LEASE, fallback_duration=1.0)
        lagged = [(0.1, 0.4)]  # 0.3 s in which nothing ran, the holder included
        assert check_terms(h.writes, lease=LEASE, fallback_duration=1.0, lags=lagged) == []

    def test_the_old_holder_may_recreate_it_and_a_free_lease_has_no_claim(self) -> None:
        h = History()
        h.write(0.0, "c0", "c0", 0)
        h.write(0.1, "admin", None)
        h.write(0.2, "c0", "c0", 0)
        h.write(0.3, "c0", "", 0)
        h.write(0.4, "admin", None)
        h.write(0.5, "c1", "c1", 0)
        assert check_terms(h.writes, lease=LEASE, fallback_duration=1.0) == []

    def test_a_faster_clock_shortens_the_claim(self) -> None:
        h = History()
        h.write(0.0, "w0", "web-0", 0)
        h.write(0.96, "w1", "web-0", 1)
        assert check_terms(h.writes, lease=LEASE, fallback_duration=1.0)
        assert check_terms(h.writes, lease=LEASE, fallback_duration=1.0, rate_tolerance=1.05) == []


class TestZombies:
    def test_renewals_after_the_work_stopped_are_caught_beyond_the_renew_deadline(self) -> None:
        h = History()
        h.renew(0.0, 2.0, "c0", "c0", 0)
        c0 = candidate("c0", {(h.uid(), 0): (0.01, 0.95)})
        findings = check_no_zombie_terms(h.writes, [c0], lease=LEASE, timings=TIMINGS)
        assert findings and all(f.startswith("zombie: c0 renewed the term") for f in findings)
        assert "after its work stopped" in findings[0]
        assert len(findings) == len([w for w in h.writes if w.time > 1.55])

    def test_a_renewal_still_on_its_way_is_allowed_and_lag_extends_it(self) -> None:
        h = History()
        h.renew(0.0, 1.5, "c0", "c0", 0)
        c0 = candidate("c0", {(h.uid(), 0): (0.01, 1.0)})
        assert check_no_zombie_terms(h.writes, [c0], lease=LEASE, timings=TIMINGS) == []
        h.renew(1.5, 1.9, "c0", "c0", 0)
        assert check_no_zombie_terms(h.writes, [c0], lease=LEASE, timings=TIMINGS)
        lag = [(1.0, 1.4)]
        assert check_no_zombie_terms(h.writes, [c0], lease=LEASE, timings=TIMINGS, lags=lag) == []

    def test_a_term_that_never_worked_must_not_renew(self) -> None:
        h = History()
        h.renew(0.0, 1.0, "c0", "c0", 0)
        (first, *_) = check_no_zombie_terms(
            h.writes, [candidate("c0")], lease=LEASE, timings=TIMINGS
        )
        assert "it never worked in it" in first


class TestReleases:
    def test_a_trapped_takeover_must_be_released_by_its_winner(self) -> None:
        h = History()
        h.write(0.0, "c0", "c0", 0)
        h.write(1.1, "c1", "c1", 1)  # c0 never released: c1 waited for expiry
        journal = Journal(traps=[("c0", 0)])
        (finding,) = check_cancelled_takeovers_released(
            h.writes, [candidate("c0"), candidate("c1")], journal, lease=LEASE, timings=TIMINGS
        )
        assert finding.startswith("unreleased: c0's term")
        assert "c1 ended it (update) at 1.100" in finding

    def test_a_release_or_a_term_of_its_own_is_enough(self) -> None:
        for holder in ("", "c0"):
            h = History()
            h.write(0.0, "c0", "c0", 0)
            h.write(0.05, "c0", holder, 1 if holder else 0)
            c0 = candidate("c0", {(h.uid(), 1): (0.06, None)} if holder else {})
            journal = Journal(traps=[("c0", 0)])
            assert (
                check_cancelled_takeovers_released(
                    h.writes, [c0], journal, lease=LEASE, timings=TIMINGS
                )
                == []
            )

    def test_a_term_it_worked_in_is_not_judged_and_faults_excuse(self) -> None:
        h = History()
        h.write(0.0, "c0", "c0", 0)
        h.write(1.1, "c1", "c1", 1)
        worked = candidate("c0", {(h.uid(), 0): (0.01, 0.02)})
        journal = Journal(traps=[("c0", 0)])
        check = functools.partial(check_cancelled_takeovers_released, lease=LEASE, timings=TIMINGS)
        assert check(h.writes, [worked], journal) == []
        journal.disturb(0.2, 0.5, "c0", "partition")
        assert check(h.writes, [candidate("c0")], journal) == []

    def test_a_raising_hook_that_broke_off_leading_counts_as_a_cancelled_campaign(self) -> None:
        h = History()
        h.write(0.0, "c0", "c0", 0)
        c0 = candidate("c0", hook_aborts=[0.01])
        (finding,) = check_cancelled_takeovers_released(
            h.writes, [c0], Journal(), lease=LEASE, timings=TIMINGS
        )
        assert "a raising hook broke off leading() before its work began" in finding
        assert "it was never released" in finding

    def test_a_raising_hook_after_the_work_still_releases_unless_the_term_was_lost(
        self,
    ) -> None:
        h = History()
        h.renew(0.0, 0.5, "c0", "c0", 0)
        h.write(2.0, "c1", "c1", 1)
        c0 = candidate("c0", {(h.uid(), 0): (0.01, 0.45)}, hook_exits=[0.46])
        (finding,) = check_cancelled_takeovers_released(
            h.writes, [c0], Journal(), lease=LEASE, timings=TIMINGS
        )
        assert "after its work" in finding
        lost = History()
        lost.renew(0.0, 0.3, "c0", "c0", 0)
        lost.write(0.35, "c1", "c1", 1)
        c0 = candidate("c0", {(lost.uid(), 0): (0.01, 0.4)}, hook_exits=[0.41])
        assert (
            check_cancelled_takeovers_released(
                lost.writes, [c0], Journal(), lease=LEASE, timings=TIMINGS
            )
            == []
        )


class TestCrowds:
    def test_a_crowded_leader_must_not_lose_its_term(self) -> None:
        journal = Journal(crowds=[("c0", 1.0, 3.0)])
        c0 = candidate("c0", losses=[(1.8, "RENEW_DEADLINE")])
        (finding,) = check_crowded_leaders([c0], journal, timings=TIMINGS)
        assert finding.startswith("crowd: c0 lost its term at 1.800 (RENEW_DEADLINE)")

    def test_other_faults_twins_raising_hooks_and_lag_excuse_a_loss(self) -> None:
        c0 = candidate("c0", losses=[(1.8, "RENEW_DEADLINE")])
        journal = Journal(crowds=[("c0", 1.0, 3.0)])
        journal.disturb(1.2, 1.5, None, "ErrorResponse 429")
        assert check_crowded_leaders([c0], journal, timings=TIMINGS) == []
        journal = Journal(crowds=[("c0", 1.0, 3.0)])
        assert check_crowded_leaders([c0], journal, timings=TIMINGS, twins=["c0"]) == []
        assert check_crowded_leaders([c0], journal, timings=TIMINGS, lags=[(1.5, 1.7)]) == []
        raising = candidate("c0", losses=[(1.8, "RENEW_DEADLINE")], hook_failures=0.3)
        assert check_crowded_leaders([raising], journal, timings=TIMINGS) == []
        outside = candidate("c0", losses=[(0.5, "RENEW_DEADLINE"), (3.7, "RENEW_DEADLINE")])
        assert check_crowded_leaders([outside], journal, timings=TIMINGS) == []


class TestSilentWatches:
    def test_a_silent_watch_kept_while_another_holds_the_lease_is_caught(self) -> None:
        h = History()
        h.renew(0.0, 4.0, "c0", "c0", 0)
        journal = Journal(silences=[("c1", 0.5, 1)])
        check = functools.partial(check_silent_watches, lease=LEASE, timings=TIMINGS, until=4.0)
        (finding,) = check(h.writes, [], [candidate("c1")], journal)
        assert finding.startswith("silent-watch: c1's watch went silent at 0.500")
        assert "and had not replaced it" in finding
        replaced = [(1.6, watch_request("c1"))]
        assert check(h.writes, replaced, [candidate("c1")], journal) == []

    def test_only_time_the_lease_is_held_by_another_and_renewed_counts(self) -> None:
        h = History()
        h.renew(0.0, 1.0, "c0", "c0", 0)
        h.write(1.0, "c0", "", 0)  # free from 1.0 to 3.0
        h.renew(3.0, 4.5, "c2", "c2", 1)
        journal = Journal(silences=[("c1", 0.5, 1)])
        check = functools.partial(check_silent_watches, lease=LEASE, timings=TIMINGS, until=4.5)
        # 0.5 s held by c0, then 1.5 s by c2: 2.0 s, not more than the bound.
        assert check(h.writes, [], [candidate("c1")], journal) == []
        # Its own term does not count either; a poller has no watch to replace.
        h.renew(4.5, 6.0, "c2", "c2", 1)
        check = functools.partial(check_silent_watches, lease=LEASE, timings=TIMINGS, until=6.0)
        working = candidate("c1", {("x", 9): (3.0, 5.0)})
        assert check(h.writes, [], [working], journal) == []
        poller = candidate("c1", watch=False)
        assert check(h.writes, [], [poller], journal) == []
        assert check(h.writes, [], [candidate("c1")], journal)

    def test_no_stream_silenced_nothing_to_replace_and_an_end_stops_the_clock(self) -> None:
        h = History()
        h.renew(0.0, 4.0, "c0", "c0", 0)
        check = functools.partial(check_silent_watches, lease=LEASE, timings=TIMINGS, until=4.0)
        none = Journal(silences=[("c1", 0.5, 0)])
        assert check(h.writes, [], [candidate("c1")], none) == []
        journal = Journal(silences=[("c1", 0.5, 1)])
        stopped = candidate("c1", ended=2.0)
        assert check(h.writes, [], [stopped], journal) == []
        journal.disturb(1.0, 2.5, "c1", "partition")
        assert check(h.writes, [], [candidate("c1")], journal) == []
        journal = Journal(silences=[("c1", 0.5, 1)])
        journal.disturb(1.0, math.inf, "c1", "kill")
        assert check(h.writes, [], [candidate("c1")], journal) == []
