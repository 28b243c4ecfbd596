"""Fault schedules for elections: faults as data, candidates that can stall, skew or die, a runner.

Our own test harness (not in the wheel); import it as ``_chaos`` from ``tests/safety``. The
server side needs nothing of its own: :class:`~leaderelect.testing.LeaseApiServer` serves every
fault kind, and its :class:`~leaderelect.testing.FaultInjector` releases held requests and
stalls or resumes open watch streams. The pieces, each usable on its own:

* :mod:`.clocks`: :class:`SkewedClock` (a ``Clock`` running ``rate`` times as fast, for
  ``LeaderElector(clock=...)``) and :func:`skewed_event_loop` (an asyncio loop whose *every*
  timer runs at ``rate``, for a candidate in a thread of its own).
* :mod:`.candidate`: :class:`ChaosCandidate`, one candidate campaigning again after every loss
  and recording its work in a :class:`~leaderelect.testing.LeadershipLog`, on the caller's
  event loop or on a loop of its own in a thread (to be stalled or skewed alone).
* :mod:`.schedules`: :class:`Schedule`, what happens and when, as plain frozen data
  (:class:`CandidateSpec`, :class:`FaultWindow`, :class:`CutWatches`, :class:`StallWatches`,
  :class:`LoopStall`, :class:`Kill`, :class:`Stop`); :func:`random_schedule` draws one from a
  seed, the same one for the same seed.
* :mod:`.runner`: :func:`run_schedule` plays a schedule against a fresh server and checks the
  election with :func:`~leaderelect.testing.check_election` and :mod:`.checks`;
  :func:`run_schedules` plays many at once and sums them up in a :class:`SoakSummary`;
  :func:`play_faults` plays timed server faults next to other code.
* :mod:`.checks`: what the faults of deployments need judged beyond ``check_election``: terms
  per process (shared identities, deleted Leases), terms that renew after their work ended,
  cancelled takeovers left unreleased, crowded leaders that lose their term, silent watches
  kept.

The faults of deployments (issue 13) are :class:`CandidateSpec` ``identity`` (shared) and
``hook_failures`` (a :class:`RaisingMetrics` sink), :class:`DeleteLease`, :class:`Crowd`,
:class:`SilentWatch` and :class:`Interrupt`.
"""

from __future__ import annotations

from .candidate import CHAOS_TIMINGS as CHAOS_TIMINGS
from .candidate import ChaosCandidate as ChaosCandidate
from .candidate import InjectedHookError as InjectedHookError
from .candidate import RaisingMetrics as RaisingMetrics
from .checks import Journal as Journal
from .checks import check_deployment as check_deployment
from .clocks import SkewedClock as SkewedClock
from .clocks import skewed_event_loop as skewed_event_loop
from .clocks import suspend_loop as suspend_loop
from .runner import LagMonitor as LagMonitor
from .runner import ScheduleResult as ScheduleResult
from .runner import SoakSummary as SoakSummary
from .runner import finding_counts as finding_counts
from .runner import play_faults as play_faults
from .runner import run_schedule as run_schedule
from .runner import run_schedules as run_schedules
from .schedules import LEADER as LEADER
from .schedules import SILENT_WATCH_BOUND as SILENT_WATCH_BOUND
from .schedules import CandidateSpec as CandidateSpec
from .schedules import Crowd as Crowd
from .schedules import CutWatches as CutWatches
from .schedules import DeleteLease as DeleteLease
from .schedules import FaultWindow as FaultWindow
from .schedules import Interrupt as Interrupt
from .schedules import Kill as Kill
from .schedules import LoopStall as LoopStall
from .schedules import Schedule as Schedule
from .schedules import SilentWatch as SilentWatch
from .schedules import StallWatches as StallWatches
from .schedules import Stop as Stop
from .schedules import random_schedule as random_schedule

__all__ = [
    "CHAOS_TIMINGS",
    "LEADER",
    "SILENT_WATCH_BOUND",
    "CandidateSpec",
    "ChaosCandidate",
    "Crowd",
    "CutWatches",
    "DeleteLease",
    "FaultWindow",
    "InjectedHookError",
    "Interrupt",
    "Journal",
    "Kill",
    "LagMonitor",
    "LoopStall",
    "RaisingMetrics",
    "Schedule",
    "ScheduleResult",
    "SilentWatch",
    "SkewedClock",
    "SoakSummary",
    "StallWatches",
    "Stop",
    "check_deployment",
    "finding_counts",
    "play_faults",
    "random_schedule",
    "run_schedule",
    "run_schedules",
    "skewed_event_loop",
    "suspend_loop",
]
