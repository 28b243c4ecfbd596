"""The elector: follow a Lease, campaign for it, and run work only while a term holds it.

Safety rests on two things. The API server's compare-and-swap on ``resourceVersion`` lets at
most one candidate win each change of holder. And timing keeps terms apart: a follower takes
over only ``leaseDurationSeconds`` after it last saw the Lease change, by its own monotonic
clock, while a leader's work runs inside a cancel scope whose deadline is ``renew_deadline``
after the *send* time of its last successful renewal (see ``_term.py``). The difference,
``lease_duration - renew_deadline``, is the margin that absorbs clock-rate drift and pauses.

The path of one election: ``_following()`` keeps a :class:`LeaseView` current with one watch
(``_follow.py``); the ``Campaign`` (``_campaign.py``) waits on that view until the lease is
free or expired and takes it with a conditional write; the won write starts a :class:`Term`,
which renews, notices a loss, and releases on the way out. ``leading()`` is one campaign and
one term; ``lead()`` campaigns until stopped; ``run()`` is client-go's callback interface on
top of ``lead()``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any, TypeVar, final

import anyio
from anyio.abc import TaskGroup

from ._campaign import Campaign
from ._candidacy import (
    OLDEST_EMULATION_VERSION,
    Candidacy,
    CandidateSettings,
    candidate_identity,
    candidate_settings,
)
from ._clock import Clock, LoopClock
from ._config import Timings
from ._errors import ConfigError, LeaseError
from ._events import LeadershipEvents
from ._follow import follow
from ._guard import GuardedMetrics
from ._identity import default_identity
from ._kube import LeaseLock
from ._kube._candidate import LeaseCandidates
from ._lease_client import LeaseSnapshot
from ._problems import ProblemWatch
from ._tasks import BackgroundTasks
from ._term import Leadership, LeadershipLost, Term
from ._view import LeaseView
from .metrics import MetricsSink, NoopMetrics

__all__ = ["LeaderElector"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@final
class LeaderElector:
    """Campaigns for a Lease on behalf of one candidate, and runs work only while it leads.

    Args:
        lock: the Lease to campaign for (a ``LeaseLock``).
        identity: our ``holderIdentity``; defaults to ``default_identity()``.
        timings: lease duration, renew deadline and retry period as one validated
            :class:`Timings` (the defaults are Kubernetes' own: 15 s, 10 s, 2 s).
        lease_duration: instead of ``timings``: seconds a follower waits after last seeing the
            lease change before taking it over.
        renew_deadline: instead of ``timings``: seconds after the send time of the last
            successful renewal at which a leader's work is cancelled.
        retry_period: instead of ``timings``: seconds between renewals, and the base of retry
            back-offs.
        release_on_cancel: when a term ends, write the lease free (holder ``""``) so that a
            follower takes over at once instead of waiting for expiry.
        watch: follow the Lease with a watch (the default). ``False`` polls it with a GET
            every jittered ``retry_period``, as client-go does: for API proxies that cannot
            stream, and for comparison.
        metrics: where to report events (see ``leaderelect.metrics``); nothing by default.
        events: record a Kubernetes Event on the Lease when this candidate becomes leader and
            when it stops leading, as client-go does (reason ``LeaderElection``; needs
            ``create`` on ``events.k8s.io`` events). Best-effort: written in the background,
            never delaying the election; a failure is logged.
        coordinated: take part in coordinated leader election (KEP-4355, kube-apiserver's
            ``CoordinatedLeaderElection`` feature): register a LeaseCandidate named after
            ``identity`` and lead only when kube-apiserver's controller names us; step down
            (work cancelled, lease released) when it prefers another candidate. See
            [Coordinated election][coordinated-election].
        binary_version: coordinated only, required: this binary's version (``"1.36.0"``).
        emulation_version: coordinated only: the version whose behaviour this binary
            emulates; defaults to ``binary_version``. The ``OldestEmulationVersion`` strategy
            lets the lowest lead, so that a rolling upgrade keeps the old leader.
        strategy: coordinated only: the strategy our candidate asks for.
        clock: the time source (tests inject one).
        rng: the random source for jitter (tests may seed one).

    Raises:
        ConfigError: when a timing or the identity is invalid, or ``timings`` is given
            together with one of the three seconds; the message names the setting.

    Example:
        ```python
        elector = LeaderElector(lock, identity="pod-a")
        async with elector.leading() as leadership:
            await reconcile_forever(fencing_token=leadership.token)
        ```
    """

    def __init__(
        self,
        lock: LeaseLock,
        *,
        identity: str | None = None,
        timings: Timings | None = None,
        lease_duration: float | None = None,
        renew_deadline: float | None = None,
        retry_period: float | None = None,
        release_on_cancel: bool = True,
        watch: bool = True,
        metrics: MetricsSink | None = None,
        events: bool = False,
        coordinated: bool = False,
        binary_version: str | None = None,
        emulation_version: str | None = None,
        strategy: str = OLDEST_EMULATION_VERSION,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._timings = _resolve_timings(timings, lease_duration, renew_deadline, retry_period)
        if identity is None:
            identity = default_identity()
            if coordinated:
                identity = candidate_identity(identity)
        if not isinstance(identity, str) or not identity.strip():
            raise ConfigError(f"identity must be a non-empty string, got {identity!r}")
        self._identity = identity
        self._candidate: CandidateSettings | None = None
        if coordinated:
            self._candidate = candidate_settings(
                identity,
                binary_version=binary_version,
                emulation_version=emulation_version,
                strategy=strategy,
            )
            if not isinstance(lock, LeaseLock):
                raise ConfigError(f"coordinated=True needs a LeaseLock, got {lock!r}")
        elif binary_version is not None or emulation_version is not None:
            raise ConfigError("binary_version and emulation_version are for coordinated=True only")
        self._candidacy: Candidacy | None = None
        self._lock = lock
        self._client = ProblemWatch(lock)
        """Every request of the election goes through it: it keeps ``problem``."""
        self._watch = bool(watch)
        self._metrics: MetricsSink = GuardedMetrics(
            metrics if metrics is not None else NoopMetrics()
        )
        self._metrics.leading_changed(lock.lease, False)  # a follower reports 0 from the start
        self._events = (
            LeadershipEvents(lock, identity=identity, timeout=self._timings.renew_deadline / 2)
            if events
            else None
        )
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._rng = rng if rng is not None else random.Random()
        self._campaign = Campaign(
            self._client,
            identity=identity,
            timings=self._timings,
            clock=self._clock,
            rng=self._rng,
            metrics=self._metrics,
            release_on_exit=bool(release_on_cancel),
            coordinated=self._candidate is not None,
        )
        self._busy = False
        self._term: Term | None = None
        self._view: LeaseView | None = None
        """The view while anything follows the Lease: the shared one, or a term's own."""
        self._shared_view: LeaseView | None = None
        """The view of ``async with elector:``, kept between terms."""
        self._memory = LeaseView()
        """What this elector has seen of the Lease, over every follow: a campaign that starts
        again (its caller cancelled the last one) must still wait out the claim of a holder
        whose Lease it saw deleted, and a fresh read alone cannot show that."""
        self._entered: contextlib.AsyncExitStack | None = None
        self._leader_listeners: list[Callable[[str | None], None]] = []
        self._last_leader: str | None = None

    # -- state ----------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """This candidate's identity."""
        return self._identity

    @property
    def lease(self) -> str:
        """The Lease, as ``"namespace/name"``."""
        return self._lock.lease

    @property
    def timings(self) -> Timings:
        """The validated timings."""
        return self._timings

    @property
    def is_leader(self) -> bool:
        """True only while a term holds and its deadline has not passed (time-aware)."""
        return self._term is not None and self._term.leadership.is_valid

    @property
    def leader(self) -> str | None:
        """The holder as last observed (``None`` if the lease is free, absent or unread)."""
        return self._view.holder if self._view is not None else self._last_leader

    @property
    def problem(self) -> LeaseError | None:
        """Why the election cannot proceed: a misconfiguration seen on its own requests.

        The last error that retrying alone will not cure (``LeaseForbidden``: 401, or 403
        naming the missing RBAC verb and resource; ``LeaseNotFound``: the namespace does not
        exist; ``LeaseInvalid``: the server rejects the request) from the election's reads,
        watches, campaign writes, renewals and releases. The election keeps retrying, since
        RBAC can be granted while it runs; the problem clears when the same kind of request
        (a read, a watch, a write) next gets through. Transient failures (timeouts, 5xx,
        429, conflicts) never show here. ``None`` when nothing is wrong.

        It is a readiness signal, not a liveness one: restarting the process does not fix
        RBAC. See [When the election cannot proceed][when-the-election-cannot-proceed].
        """
        problem = self._client.problem
        if problem is None and self._candidacy is not None:
            return self._candidacy.problem
        return problem

    def __repr__(self) -> str:
        return f"<LeaderElector {self._identity!r} for {self.lease} leader={self.leader!r}>"

    def check(self, tolerance: float = 0.0) -> str | None:
        """A liveness check with client-go's ``HealthzAdaptor`` meaning.

        A leader's work is cancelled at its renew deadline, so a term that still exists
        ``lease_duration + tolerance`` seconds after its last successful renewal means the
        process is wedged (a blocked event loop, work that ignores cancellation): others may
        already lead. Restarting it is the remedy; wire this into a liveness probe.

        A misconfiguration (a missing RBAC permission, a missing namespace) does not fail
        this check, since a restart cannot cure it: it shows in
        [`problem`][leaderelect.LeaderElector.problem], for a readiness probe.

        Args:
            tolerance: extra seconds allowed beyond ``lease_duration``.

        Returns:
            ``None`` when healthy (including while following), else what is wrong.
        """
        term = self._term
        if term is None or term.ended:
            return None
        stale = term.stale_for()
        if stale > self._timings.lease_duration + tolerance:
            return (
                f"leader {self._identity!r} of lease {self.lease} has not renewed for "
                f"{stale:.1f}s (lease_duration {self._timings.lease_duration:g}s + "
                f"tolerance {tolerance:g}s)"
            )
        return None

    # -- following the Lease --------------------------------------------------------------

    async def __aenter__(self) -> LeaderElector:
        """Follow the Lease for the life of the block, for every term and observer in it.

        Optional: ``leading()``, ``lead()``, ``run()`` and ``observe()`` work on their own,
        each following the Lease for as long as it runs. Inside ``async with elector:`` they
        share one watch instead, and ``elector.leader`` stays current between terms.
        """
        if self._entered is not None:
            raise RuntimeError(f"elector {self._identity!r} is already entered")
        stack = contextlib.AsyncExitStack()
        try:
            view = await self._follow_in(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._entered = stack
        self._shared_view = self._view = view
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack = self._entered
        assert stack is not None, "LeaderElector.__aexit__ without __aenter__"
        self._entered = self._shared_view = self._view = None
        await stack.aclose()

    async def _follow_in(self, stack: contextlib.AsyncExitStack) -> LeaseView:
        """Keep a new view current until ``stack`` closes; returns after the first read."""
        # While we follow, our requests use connections of their own (see LeaseLock).
        await stack.enter_async_context(self._client.reserved())
        task_group = await stack.enter_async_context(BackgroundTasks())
        view = self._memory
        await task_group.start(
            partial(
                follow,
                self._client,
                view,
                timings=self._timings,
                clock=self._clock,
                rng=self._rng,
                watch=self._watch,
            )
        )
        self._last_leader = view.holder
        stack.callback(view.add_listener(self._notify_leader))
        return view

    @contextlib.asynccontextmanager
    async def _following(self) -> AsyncIterator[LeaseView]:
        """The shared view inside ``async with elector:``; else one followed for the block."""
        if self._shared_view is not None:
            yield self._shared_view
            return
        async with contextlib.AsyncExitStack() as stack:
            self._view = await self._follow_in(stack)
            try:
                yield self._view
            finally:
                self._view = None

    def _notify_leader(self, snapshot: LeaseSnapshot | None) -> None:
        holder = (
            None if snapshot is None or snapshot.record.is_free else snapshot.record.holder_identity
        )
        if holder != self._last_leader:
            self._last_leader = holder
            if holder is not None:
                logger.info("lease %s: leader is now %s", self.lease, holder)
            for listener in list(self._leader_listeners):
                listener(holder)

    # -- the public entry points ----------------------------------------------------------

    def leading(self) -> AbstractAsyncContextManager[Leadership, None]:
        """Campaign until this candidate holds the lease, then run the block while it holds.

        The block runs inside a cancel scope owned by the elector. If the lease is lost, the
        block is cancelled at once and ``LeadershipLost`` is raised from the ``async with``.
        On any exit (normal, exception, cancellation from outside) the block has already
        finished; the renewals are stopped, then the lease is released (when
        ``release_on_cancel``), and only then does ``leading()`` return or re-raise.

        Raises:
            LeadershipLost: the lease was lost while the block ran.
            RuntimeError: this elector is already campaigning or leading.
        """
        return _SingleUse(self._one_term(), "each leading() context")

    @contextlib.asynccontextmanager
    async def _one_term(self) -> AsyncIterator[Leadership]:
        if self._busy:
            raise RuntimeError(
                f"elector {self._identity!r} is already campaigning for or leading "
                f"{self.lease}; an elector runs one term at a time"
            )
        self._busy = True
        try:
            async with (
                self._following() as view,
                self._standing() as candidacy,
                self._event_tasks() as event_tasks,
            ):
                started = self._clock.monotonic()
                term = await self._campaign.run(
                    view, before_release=candidacy.withdraw if candidacy is not None else None
                )
                transitions = term.leadership.token.transitions
                self._metrics.acquired(self.lease, self._clock.monotonic() - started, transitions)
                self._metrics.leading_changed(self.lease, True)
                self._term = term
                won = view.snapshot
                if self._events is not None and event_tasks is not None and won is not None:
                    self._events.became_leader(event_tasks, won)
                try:
                    async with term as leadership:
                        yield leadership
                finally:
                    self._term = None
                    if self._events is not None and event_tasks is not None and won is not None:
                        last = view.snapshot
                        if last is None or last.uid != won.uid:
                            last = won  # deleted or replaced: the Lease we led
                        self._events.stopped_leading(event_tasks, last)
        finally:
            self._busy = False

    @contextlib.asynccontextmanager
    async def _standing(self) -> AsyncIterator[Candidacy | None]:
        """Coordinated: our LeaseCandidate, for one campaign and its term; else nothing."""
        if self._candidate is None:
            yield None
            return
        assert isinstance(self._lock, LeaseLock)
        candidacy = Candidacy(
            LeaseCandidates(self._lock, self._identity),
            lease_name=self._lock.name,
            settings=self._candidate,
            timings=self._timings,
            clock=self._clock,
            rng=self._rng,
        )
        async with candidacy:
            self._candidacy = candidacy
            try:
                yield candidacy
            finally:
                self._candidacy = None

    def _event_tasks(self) -> AbstractAsyncContextManager[TaskGroup | None]:
        """Where a term's Events are written (see ``_events.py``); nothing without events."""
        if self._events is None:
            return contextlib.nullcontext()
        return self._events.owned()

    async def lead(
        self,
        work: Callable[[Leadership], Awaitable[T]],
        *,
        stop: anyio.Event | None = None,
        recampaign: bool = True,
        on_term_end: Callable[[Leadership], Awaitable[None]] | None = None,
    ) -> T | None:
        """Campaign, run ``work`` while leading, and campaign again after each lost term,
        until ``work`` returns or ``stop`` is set.

        A stop cancels a campaign, but lets a term step down: ``work`` is cancelled while the
        lease is still held and renewed, so its clean-up (``finally`` blocks, shielded where
        it must finish) runs as leader; then the lease is released.

        Args:
            work: the leader's work, called with each term's ``Leadership``; cancelled when the
                term is lost or ``stop`` is set.
            stop: set it to stop campaigning, or to make the current leader step down.
            recampaign: after a lost term, campaign again (else raise ``LeadershipLost``).
            on_term_end: awaited (shielded) after each term this candidate led, once its work
                has stopped and the lease is released (``released``) or lost
                (``loss_reason``).

        Returns:
            What ``work`` returned; ``None`` when stopped.

        Raises:
            LeadershipLost: a term was lost and ``recampaign`` is false.

        Example:
            ```python
            stop = anyio.Event()   # set by a signal handler, or at shutdown
            await elector.lead(reconcile_forever, stop=stop)
            ```
        """
        stop = stop if stop is not None else anyio.Event()
        async with BackgroundTasks() as tasks:
            stoppable: list[anyio.CancelScope] = []  # the campaign's scope, then the work's

            async def on_stop() -> None:
                await stop.wait()
                for scope in stoppable:
                    scope.cancel()

            tasks.start_soon(on_stop)
            while not stop.is_set():
                led: Leadership | None = None
                with anyio.CancelScope() as campaign:
                    stoppable[:] = [campaign]
                    try:
                        async with self.leading() as led:
                            with anyio.CancelScope() as step_down:
                                stoppable[:] = [step_down]
                                result = await work(led)
                        if not step_down.cancel_called:
                            return result
                    except LeadershipLost as lost:
                        if stop.is_set():
                            pass
                        elif not recampaign:
                            raise
                        else:
                            logger.info("campaigning again for %s after: %s", self.lease, lost)
                    finally:
                        stoppable.clear()
                        if led is not None and on_term_end is not None:
                            with anyio.CancelScope(shield=True):
                                await on_term_end(led)
        return None

    async def run(
        self,
        on_started_leading: Callable[[Leadership], Awaitable[None]],
        *,
        on_stopped_leading: Callable[[], Awaitable[None]] | None = None,
        on_new_leader: Callable[[str | None], Awaitable[None]] | None = None,
        once: bool = False,
    ) -> None:
        """client-go's ``RunOrDie`` loop: campaign, lead, and campaign again after a loss.

        ``on_started_leading(leadership)`` is the work; it is cancelled when the term is lost.
        ``on_stopped_leading()`` runs after each term this candidate actually led, once its
        work has stopped and the lease is released. ``on_new_leader(identity)`` is awaited,
        in order, for each change of observed holder (``None`` when the lease becomes free),
        ourselves included; it is fed by the same watch, not by extra requests.

        Returns when ``on_started_leading`` returns, or after one lost term if ``once``.
        Exceptions from the callbacks propagate after the lease is released.
        """
        send, receive = anyio.create_memory_object_stream[str | None](math.inf)
        drained = anyio.Event()

        async def announce() -> None:
            async with receive:
                async for leader in receive:
                    assert on_new_leader is not None
                    await on_new_leader(leader)
            drained.set()

        async def stopped(_: Leadership) -> None:
            if on_stopped_leading is not None:
                await on_stopped_leading()

        def enqueue(leader: str | None) -> None:
            # Changes seen after the announcer stopped (during a release on the way out of a
            # cancelled run) are dropped, never raised into the elector.
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                send.send_nowait(leader)

        async with contextlib.AsyncExitStack() as stack:
            if self._entered is None:
                await stack.enter_async_context(self)  # one watch for every term
            tasks = await stack.enter_async_context(BackgroundTasks())
            if on_new_leader is not None:
                if self.leader is not None:
                    enqueue(self.leader)  # the holder already seen
                tasks.start_soon(announce)
                self._leader_listeners.append(enqueue)
            else:
                drained.set()
            try:
                await self.lead(on_started_leading, recampaign=not once, on_term_end=stopped)
            finally:
                if on_new_leader is not None:
                    self._leader_listeners.remove(enqueue)
                send.close()
            await drained.wait()  # deliver the last changes before returning

    @contextlib.asynccontextmanager
    async def observe(self) -> AsyncIterator[AsyncIterator[str | None]]:
        """Watch who leads, without campaigning.

        Yields an async iterator of holders: the current one first, then each change
        (``None`` while the lease is free or absent). Inside ``async with elector:`` it uses
        the elector's watch; otherwise it opens its own (a read and a watch, plus a reconnect
        every few minutes).

        Example:
            ```python
            async with elector.observe() as leaders:
                async for leader in leaders:
                    print("leader is now", leader)
            ```
        """
        send, receive = anyio.create_memory_object_stream[str | None](math.inf)
        async with self._following() as view:
            last = view.holder

            def changed(_: LeaseSnapshot | None) -> None:
                nonlocal last
                if last != view.holder:
                    last = view.holder
                    with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                        send.send_nowait(view.holder)

            send.send_nowait(view.holder)
            remove = view.add_listener(changed)
            try:
                async with send, receive:
                    yield receive
            finally:
                remove()


def _resolve_timings(
    timings: Timings | None,
    lease_duration: float | None,
    renew_deadline: float | None,
    retry_period: float | None,
) -> Timings:
    seconds = {
        "lease_duration": lease_duration,
        "renew_deadline": renew_deadline,
        "retry_period": retry_period,
    }
    given = {name: value for name, value in seconds.items() if value is not None}
    if timings is None:
        return Timings(**given)
    if not isinstance(timings, Timings):
        raise ConfigError(f"timings must be a leaderelect.Timings, got {timings!r}")
    if given:
        raise ConfigError(
            f"give either timings or {', '.join(given)}, not both: timings already says "
            f"lease_duration={timings.lease_duration:g}, renew_deadline="
            f"{timings.renew_deadline:g}, retry_period={timings.retry_period:g}"
        )
    return timings


@final
class _SingleUse(AbstractAsyncContextManager[Leadership, None]):
    """An async context manager that may be entered once, with a message that says so."""

    def __init__(self, inner: AbstractAsyncContextManager[Leadership], what: str) -> None:
        self._inner = inner
        self._what = what
        self._entered = False

    async def __aenter__(self) -> Leadership:
        if self._entered:
            raise RuntimeError(f"{self._what} can be entered only once; call leading() again")
        self._entered = True
        return await self._inner.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._inner.__aexit__(*exc_info)
