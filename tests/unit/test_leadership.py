"""A term's validity is time-aware: it ends at its deadline even if nothing else happened."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from leaderelect import FencingToken, Leadership


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def utcnow(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=timezone.utc)


def make_term(clock: FakeClock) -> Leadership:
    return Leadership(
        identity="me",
        lease="default/x",
        token=FencingToken("uid-1", 4),
        acquired_at=clock.utcnow(),
        deadline=clock.now + 10.0,
        clock=clock,
    )


def test_term_is_valid_until_renew_deadline_after_send_time() -> None:
    clock = FakeClock()
    term = make_term(clock)
    assert term.deadline == 1010.0
    assert term.time_left() == 10.0
    clock.now = 1009.5
    assert term.time_left() == 0.5
    clock.now = 1010.0
    assert not term.is_valid
    assert term.time_left() == 0.0


def test_fencing_token_is_lease_uid_and_transitions() -> None:
    term = make_term(FakeClock())
    assert term.token == FencingToken("uid-1", 4)
    assert str(term.token) == "uid-1:4"
    assert FencingToken("uid-1", 4) < FencingToken("uid-1", 5)


def test_fencing_tokens_of_two_lease_objects_refuse_to_be_ordered() -> None:
    old, new = FencingToken("b-uid", 9), FencingToken("a-uid", 0)
    # Ordering by uid would say the token of the deleted Lease is newer: it has no order.
    assert not old.same_lease(new)
    with pytest.raises(ValueError, match="two Lease objects"):
        _ = old > new
    with pytest.raises(ValueError, match="two Lease objects"):
        sorted([old, new])
    assert old != new
    assert FencingToken("a-uid", 1) >= FencingToken("a-uid", 1)
    assert max(FencingToken("a-uid", 1), FencingToken("a-uid", 3)).transitions == 3
