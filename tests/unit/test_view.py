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
