"""The follower's view of the Lease: expiry from local observation, never from renewTime."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import anyio
import pytest

from leaderelect._lease_client import LeaseSnapshot
from leaderelect._record import LeaseRecord
from leaderelect._view import LeaseView

LONG_AGO = datetime(2001, 1, 1, tzinfo=timezone.utc)


def snapshot(
    rv: int, holder: str = "a", duration: int | None = 10, **fields: object
) -> LeaseSnapshot:
    record = LeaseRecord(
        holder_identity=holder,
        lease_duration_seconds=duration,
        renew_time=fields.get("renew_time", LONG_AGO),  # type: ignore[arg-type]
        lease_transitions=fields.get("transitions", 0),  # type: ignore[arg-type]
    )
    return LeaseSnapshot(record=record, resource_version=str(rv), uid="u1", obj={})


def test_expiry_counts_from_local_observation_not_from_renew_time() -> None:
    view = LeaseView()
    view.update(snapshot(5, renew_time=LONG_AGO), at=100.0)
    assert view.expires_at(fallback_duration=15) == 110.0


def test_any_new_version_resets_the_timer_but_rereading_one_does_not() -> None:
    view = LeaseView()
    view.update(snapshot(5), at=100.0)
    view.update(snapshot(5), at=103.0)  # the same version, read again
    assert view.changed_at == 100.0
    view.update(snapshot(6), at=104.0)  # a renewal that wrote an identical record
    assert view.changed_at == 104.0
    view.update(snapshot(7, renew_time=LONG_AGO + timedelta(seconds=1)), at=105.0)
    assert view.changed_at == 105.0


def test_record_duration_wins_over_ours_and_missing_duration_falls_back_to_ours() -> None:
    view = LeaseView()
    view.update(snapshot(5, duration=60), at=0.0)
    assert view.expires_at(fallback_duration=2) == 60.0
    view.update(snapshot(6, duration=None), at=1.0)
    assert view.expires_at(fallback_duration=2) == 3.0


def test_stale_events_never_roll_the_view_back() -> None:
    view = LeaseView()
    assert view.update(snapshot(9, holder="new"), at=1.0)
    assert not view.update(snapshot(8, holder="old"), at=2.0)
    assert view.holder == "new"


def test_free_and_absent_leases_have_no_holder() -> None:
    assert not LeaseView().known
    view = LeaseView()
    assert view.holder is None
    view.update(snapshot(1, holder=""), at=0.0)
    assert view.holder is None and view.known
    view.update(None, at=1.0)
    assert view.holder is None and view.snapshot is None


async def test_waiters_wake_on_a_newer_observation() -> None:
    view = LeaseView()
    since = view.version

    async def later() -> None:
        view.update(snapshot(1), at=anyio.current_time())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(later)
            assert await view.wait_for_change(since)


async def test_waiting_gives_up_at_the_deadline() -> None:
    view = LeaseView()
    assert not await view.wait_for_change(view.version, deadline=anyio.current_time())


@pytest.mark.parametrize(("older", "newer"), [("9", "10"), ("99", "100")])
def test_resource_versions_compare_as_numbers(older: str, newer: str) -> None:
    view = LeaseView()
    view.update(snapshot(int(newer)), at=0.0)
    assert not view.update(snapshot(int(older)), at=1.0)


def test_a_late_deleted_event_never_ends_a_newer_view() -> None:
    view = LeaseView()
    view.update(snapshot(9, holder="new"), at=1.0)  # a fresh term, already seen
    # A DELETED from before it arrives late: it carries only its resourceVersion.
    assert not view.update(None, at=2.0, version="8")
    assert view.holder == "new"
    assert view.update(None, at=3.0, version="10")  # a real, later deletion
    assert view.snapshot is None


def test_a_successful_read_is_taken_even_when_its_version_compares_lower() -> None:
    # After an etcd restore the server's resourceVersions start again below ours: a watch
    # event may not roll the view back, but what a read answers is the truth.
    view = LeaseView()
    view.update(snapshot(900, holder="before-restore"), at=1.0)
    assert not view.update(snapshot(12, holder="after-restore"), at=2.0)
    assert view.update(snapshot(12, holder="after-restore"), at=3.0, authoritative=True)
    assert view.holder == "after-restore"
    assert view.update(snapshot(13, holder="next"), at=4.0)  # events from there on count again


def test_a_deleted_held_lease_keeps_its_claim_until_it_would_have_expired() -> None:
    view = LeaseView()
    view.update(snapshot(5, holder="cut-off", duration=10), at=100.0)
    view.update(None, at=104.0, version="6")  # deleted; its holder may still be working
    deleted = view.deleted_holder
    assert deleted is not None and deleted.record.holder_identity == "cut-off"
    # Counted from when the deletion was seen: we may have missed the last renewals.
    assert view.deleted_claim_ends(fallback_duration=15) == 114.0
    view.update(snapshot(7, holder="someone"), at=105.0)  # created again: the claim is moot
    assert view.deleted_holder is None
    assert view.deleted_claim_ends(fallback_duration=15) == float("-inf")


def test_a_deleted_event_names_the_last_holder_even_one_never_seen_before() -> None:
    view = LeaseView()
    view.update(snapshot(5, holder="me", duration=10), at=100.0)
    # Someone took over, unseen (our watch lagged), then the Lease was deleted: the DELETED
    # event's object is its very last state.
    view.update(None, at=104.0, version="8", last=snapshot(7, holder="taker", duration=20))
    deleted = view.deleted_holder
    assert deleted is not None and deleted.record.holder_identity == "taker"
    assert view.deleted_exactly
    assert view.deleted_claim_ends(fallback_duration=15) == 124.0


def test_a_404_after_a_gap_is_not_exact_about_the_last_holder() -> None:
    view = LeaseView()
    view.update(snapshot(5, holder="me", duration=10), at=100.0)
    view.update(None, at=104.0, authoritative=True)  # a read: 404
    deleted = view.deleted_holder
    assert deleted is not None and deleted.record.holder_identity == "me"
    assert not view.deleted_exactly  # others may have written, unseen, before the deletion


def test_a_deleted_free_lease_leaves_no_claim() -> None:
    view = LeaseView()
    view.update(snapshot(5, holder=""), at=100.0)
    view.update(None, at=101.0, version="6")
    assert view.deleted_holder is None
