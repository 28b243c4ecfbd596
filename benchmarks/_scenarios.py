"""What is measured: graceful handovers, crash failovers, and steady-state load.

Each scenario runs one fleet of candidates per implementation on a Lease of its own, and times
takeovers with the stamps the candidates take themselves (see ``_candidate.py``): a handover runs
from the leader's ``end`` (the last statement of its work) to the next leader's ``start`` (the
first statement of its work); a failover from the orchestrator's SIGKILL to the next ``start``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import resource
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ._members import Bus, Event, GoMember, Member, ProcStat, PythonMember

NAMESPACE = "default"
_STARTUP = 60.0
"""Seconds a fleet gets to start and elect a first leader (interpreters start slowly)."""
_FOLLOW_WAIT = 15.0
"""Seconds a (re)started candidate gets to make its first read of the Lease."""
_STEP_DOWN_WAIT = 5.0
"""Seconds a leader gets to end its work after being asked to."""


@dataclass(frozen=True, slots=True)
class Timings:
    lease_duration: float
    renew_deadline: float
    retry_period: float

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.lease_duration, self.renew_deadline, self.retry_period)


@dataclass(frozen=True, slots=True)
class Impl:
    key: str
    label: str
    releases: bool
    """Whether stepping down writes the lease free (else the next leader waits for expiry)."""
    note: str = ""


IMPLS: dict[str, Impl] = {
    "ours": Impl("ours", "leaderelect (watch)", True),
    "ours-poll": Impl(
        "ours-poll",
        "leaderelect (polling, watch=False)",
        True,
        "client-go's algorithm: followers GET every jittered retry_period",
    ),
    "k8sa": Impl(
        "k8sa",
        "kubernetes_asyncio.leaderelection",
        False,
        "no release: its graceful step-down is an expiry; no jitter; GET before every write",
    ),
    "client-go": Impl(
        "client-go",
        "client-go v1.36 (le-example)",
        True,
        "ReleaseOnCancel on SIGTERM; le-example exits after it, so a new process rejoins",
    ),
}


class ScenarioError(RuntimeError):
    """A step did not happen in time; the message says which."""


@dataclass
class Settings:
    timings: Timings
    handovers: int
    expiry_handovers: int
    failovers: int
    followers: list[int]
    window: float
    warmup: float
    fleet_size: int
    electors_per_process: int
    impls: list[str]
    concurrent: bool
    together_up_to: int
    """Load phases with more followers run one implementation at a time."""
    seed: int | None
    go_binary: Path | None


# --------------------------------------------------------------------------------------------
# Fleets
# --------------------------------------------------------------------------------------------


class Fleet:
    """Candidates of one implementation campaigning for one Lease, with their own event bus."""

    def __init__(
        self,
        impl: Impl,
        target: Any,
        settings: Settings,
        tg: TaskGroup,
        scenario: str,
    ) -> None:
        self.impl = impl
        self.target = target
        self.settings = settings
        self.timings = settings.timings
        self._tg = tg
        self.bus = Bus()
        self.lease = f"bench-{impl.key}-{scenario}-{secrets.token_hex(3)}"
        self._prefix = f"{impl.key}-{scenario}"
        self._numbers = itertools.count(1)
        self.members: list[Member] = []
        self.member_of: dict[str, Member] = {}

    def new_identity(self) -> str:
        return f"{self._prefix}-{next(self._numbers)}"

    async def spawn(self, count: int = 1) -> Member:
        """Start one process with ``count`` new electors; returns it once it runs."""
        identities = [self.new_identity() for _ in range(count)]
        label = identities[0] if count == 1 else f"{identities[0]}..{identities[-1]}"
        member: Member
        if self.impl.key == "client-go":
            assert count == 1 and self.settings.go_binary is not None
            member = GoMember(
                self.bus,
                label,
                binary=self.settings.go_binary,
                identity=identities[0],
                lease=self.lease,
                namespace=NAMESPACE,
                timings=self.timings.as_tuple(),
                kubeconfig=self.target.kubeconfig(identities[0]),
            )
        else:
            member = PythonMember(
                self.bus,
                label,
                impl=self.impl.key,
                lease=self.lease,
                namespace=NAMESPACE,
                timings=self.timings.as_tuple(),
                electors=[(i, self.target.kubeconfig(i)) for i in identities],
            )
        await self._tg.start(member.run)
        self.members.append(member)
        for identity in identities:
            self.member_of[identity] = member
        return member

    @property
    def running(self) -> list[Member]:
        return [m for m in self.members if m.running]

    async def wait_leader(self, since: int, within: float = _STARTUP) -> str:
        start = await self.bus.wait_event(since, "start", within)
        if start is None:
            raise ScenarioError(
                f"no {self.impl.label} candidate led within {within:g}s" + (self._failures())
            )
        return start.who

    async def wait_following(self, since: int, identities: Sequence[str], within: float) -> None:
        """Wait until each of ``identities`` has read the Lease (or led) since ``since``."""

        def done() -> bool | None:
            seen = {e.who for e in self.bus.events[since:] if e.kind in ("following", "start")}
            return True if all(i in seen for i in identities) else None

        if await self.bus.wait_for(done, within) is None:
            raise ScenarioError(
                f"{self.impl.label}: candidates did not read the Lease within {within:g}s"
                + self._failures()
            )

    async def step_down(self, identity: str) -> None:
        member = self.member_of[identity]
        if isinstance(member, GoMember):
            member.terminate()
        else:
            assert isinstance(member, PythonMember)
            await member.send(f"stepdown {identity}")

    async def rejoin(self, identity: str) -> str:
        """Let a stepped-down candidate campaign again; returns its identity (new for Go)."""
        member = self.member_of[identity]
        mark = self.bus.mark()
        if isinstance(member, GoMember):  # le-example exits after stepping down
            with anyio.move_on_after(self.timings.renew_deadline + 5):
                await member.exited.wait()
            replacement = await self.spawn()
            identity = replacement.identities[0]
        else:
            assert isinstance(member, PythonMember)
            await member.send(f"campaign {identity}")
        await self.wait_following(mark, [identity], _FOLLOW_WAIT)
        return identity

    async def stop_all(self) -> None:
        grace = self.timings.renew_deadline + 3
        async with anyio.create_task_group() as tg:
            for member in self.running:
                tg.start_soon(member.stop, grace)

    def unexpected(self) -> list[str]:
        """Terms lost without being asked, and candidates that died by themselves."""
        found = [f"{e.who} lost its term ({e.detail})" for e in self.bus.events if e.kind == "lost"]
        for member in self.members:
            if member.exited.is_set() and member.killed_at is None and member.kind == "python":
                found.append(f"{member.label} exited by itself")
        return found

    def _failures(self) -> str:
        dead = [m for m in self.members if m.exited.is_set() and m.killed_at is None]
        if not dead:
            return ""
        return "\n    " + "\n    ".join(m.describe_failure() for m in dead[:3])


@contextlib.asynccontextmanager
async def open_fleet(
    impl: Impl, target: Any, settings: Settings, scenario: str
) -> AsyncIterator[Fleet]:
    """A fleet whose processes are all stopped (then killed) when the block is left."""
    async with anyio.create_task_group() as tg:
        fleet = Fleet(impl, target, settings, tg, scenario)
        try:
            yield fleet
        finally:
            with anyio.CancelScope(shield=True):
                await fleet.stop_all()
            tg.cancel_scope.cancel()


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class LatencyResult:
    impl: str
    scenario: str
    """``handover`` or ``failover``."""
    samples: list[float] = field(default_factory=list)
    """Seconds: handover latency, or failover time beyond lease_duration (from the SIGKILL)."""
    since_renewal: list[float] = field(default_factory=list)
    """Failover only: seconds beyond lease_duration, from the dead leader's last renewal."""
    released: list[float | None] = field(default_factory=list)
    """Handover, leaderelect only: seconds from the end of the work until ``leading()`` had
    returned, its release written (one per sample; None when not seen)."""
    requested: int = 0
    error: str | None = None
    unexpected: list[str] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProcessFigures:
    label: str
    electors: int
    leader: bool
    cpu_seconds: float
    peak_rss_mb: float


@dataclass
class LoadResult:
    impl: str
    followers: int
    window: float
    leader: str = ""
    leader_requests: dict[str, int] = field(default_factory=dict)
    follower_requests: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per follower identity: requests by verb over the window."""
    counted_by: str = ""
    client_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Every elector's requests over the window as counted in the client (cross-check)."""
    processes: list[ProcessFigures] = field(default_factory=list)
    leader_changes: int = 0
    error: str | None = None
    unexpected: list[str] = field(default_factory=list)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadPhase:
    followers: int
    window: float
    results: dict[str, LoadResult] = field(default_factory=dict)
    server_totals: dict[str, int] | None = None
    """All clients' lease requests over the window, by verb, from the server's own metric."""
    orchestrator_cpu_seconds: float = 0.0
    """CPU of the orchestrator process over the window (it runs the embedded server)."""
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["results"] = {k: v.to_json() for k, v in self.results.items()}
        return out


# --------------------------------------------------------------------------------------------
# Handover and failover
# --------------------------------------------------------------------------------------------


def _expect(event: Event | None, failure: str) -> Event:
    if event is None:
        raise ScenarioError(failure)
    return event


def _is(identity: str) -> Callable[[str], bool]:
    return lambda who: who == identity


def _is_not(identity: str) -> Callable[[str], bool]:
    return lambda who: who != identity


async def measure_handovers(
    impl: Impl, target: Any, settings: Settings, count: int
) -> LatencyResult:
    """Step the leader down ``count`` times; time each handover to the next leader's work."""
    timings = settings.timings
    rng = random.Random(settings.seed)
    result = LatencyResult(impl.key, "handover", requested=count, note=impl.note)
    result.load_before = _loadavg()
    started = time.monotonic()
    async with open_fleet(impl, target, settings, "h") as fleet:
        try:
            with anyio.fail_after(_STARTUP + count * (timings.lease_duration * 2 + 30)):
                for _ in range(settings.fleet_size):
                    await fleet.spawn()
                leader = await fleet.wait_leader(0)
                others = [i for i in fleet.member_of if i != leader]
                await fleet.wait_following(0, others, _STARTUP)
                for _ in range(count):
                    # A random phase, so that polling followers are caught anywhere in a period.
                    await anyio.sleep(rng.uniform(0, timings.retry_period))
                    mark = fleet.bus.mark()
                    await fleet.step_down(leader)
                    end = _expect(
                        await fleet.bus.wait_event(mark, "end", _STEP_DOWN_WAIT, who=_is(leader)),
                        f"{leader} did not end its work when asked",
                    )
                    bound = timings.lease_duration + timings.renew_deadline + 5
                    new = _expect(
                        await fleet.bus.wait_event(mark, "start", bound, who=_is_not(leader)),
                        f"nobody took over within {bound:g}s after {leader} stepped down"
                        + fleet._failures(),
                    )
                    result.samples.append(new.at - end.at)
                    if impl.key in ("ours", "ours-poll"):
                        released = await fleet.bus.wait_event(
                            mark, "released", _STEP_DOWN_WAIT, who=_is(leader)
                        )
                        result.released.append(None if released is None else released.at - end.at)
                    await fleet.rejoin(leader)
                    leader = new.who
        except (ScenarioError, TimeoutError) as exc:
            result.error = str(exc) or "timed out"
        result.unexpected = fleet.unexpected()
    result.seconds = time.monotonic() - started
    result.load_after = _loadavg()
    return result


async def measure_failovers(
    impl: Impl, target: Any, settings: Settings, count: int
) -> LatencyResult:
    """SIGKILL the leader right after a renewal ``count`` times; time the next leader's work."""
    timings = settings.timings
    rng = random.Random(settings.seed)
    result = LatencyResult(impl.key, "failover", requested=count, note=impl.note)
    result.load_before = _loadavg()
    started = time.monotonic()
    async with open_fleet(impl, target, settings, "f") as fleet:
        try:
            with anyio.fail_after(_STARTUP + count * (timings.lease_duration * 3 + 30)):
                for _ in range(settings.fleet_size):
                    await fleet.spawn()
                leader = await fleet.wait_leader(0)
                others = [i for i in fleet.member_of if i != leader]
                await fleet.wait_following(0, others, _STARTUP)
                for _ in range(count):
                    await anyio.sleep(rng.uniform(0, timings.retry_period))
                    mark = fleet.bus.mark()
                    renewed = _expect(
                        await fleet.bus.wait_event(
                            mark, "renewed", timings.renew_deadline, who=_is(leader)
                        ),
                        f"{leader} did not renew within the renew deadline",
                    )
                    killed_at = fleet.member_of[leader].kill()
                    # The replacement joins at once: it reads the lease after the others, so it
                    # cannot win this takeover, and the fleet keeps its size for the next one.
                    replacement = await fleet.spawn()
                    bound = 2 * timings.lease_duration + timings.renew_deadline + 5
                    new = _expect(
                        await fleet.bus.wait_event(mark, "start", bound, who=_is_not(leader)),
                        f"nobody took over within {bound:g}s after {leader} was killed"
                        + fleet._failures(),
                    )
                    duration = timings.lease_duration
                    result.samples.append(new.at - killed_at - duration)
                    result.since_renewal.append(new.at - renewed.at - duration)
                    await fleet.wait_following(mark, replacement.identities, _FOLLOW_WAIT)
                    leader = new.who
        except (ScenarioError, TimeoutError) as exc:
            result.error = str(exc) or "timed out"
        result.unexpected = fleet.unexpected()
    result.seconds = time.monotonic() - started
    result.load_after = _loadavg()
    return result


# --------------------------------------------------------------------------------------------
# Steady-state load
# --------------------------------------------------------------------------------------------


def _follower_layout(impl: Impl, followers: int, per_process: int) -> list[int]:
    """How many electors each follower process runs."""
    if impl.key == "client-go" or followers <= per_process:
        return [1] * followers
    full, rest = divmod(followers, per_process)
    return [per_process] * full + ([rest] if rest else [])


async def _client_counts(fleet: Fleet) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for member in fleet.running:
        if isinstance(member, PythonMember):
            counts = await member.client_counts()
            if counts:
                out.update(counts)
    return out


def _diff(
    after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for identity, verbs in after.items():
        base = before.get(identity, {})
        out[identity] = {v: n - base.get(v, 0) for v, n in verbs.items() if n - base.get(v, 0)}
    return out


def _by_user(counts: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (user, verb), n in counts.items():
        out.setdefault(user, {})[verb] = n
    return out


async def measure_load(
    impls: Sequence[Impl], target: Any, settings: Settings, followers: int
) -> LoadPhase:
    """One leader and ``followers`` followers per implementation, all at once; one window."""
    phase = LoadPhase(followers, settings.window)
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        fleets: dict[str, Fleet] = {}
        results: dict[str, LoadResult] = {}
        leaders: dict[str, str] = {}
        for impl in impls:
            results[impl.key] = LoadResult(impl.key, followers, settings.window, note=impl.note)
            fleets[impl.key] = await stack.enter_async_context(
                open_fleet(impl, target, settings, f"l{followers}")
            )

        async def prepare(impl: Impl) -> None:
            fleet = fleets[impl.key]
            result = results[impl.key]
            try:
                with anyio.fail_after(_STARTUP + followers):
                    await fleet.spawn()
                    leaders[impl.key] = await fleet.wait_leader(0)
                    mark = fleet.bus.mark()
                    for size in _follower_layout(impl, followers, settings.electors_per_process):
                        await fleet.spawn(size)
                    pending = [i for i in fleet.member_of if i != leaders[impl.key]]
                    await fleet.wait_following(mark, pending, _STARTUP + followers)
            except (ScenarioError, TimeoutError) as exc:
                result.error = str(exc) or "timed out while starting"

        async with anyio.create_task_group() as tg:
            for impl in impls:
                tg.start_soon(prepare, impl)
        ready = [impl for impl in impls if results[impl.key].error is None]
        await anyio.sleep(settings.warmup)

        phase.load_before = _loadavg()
        server_before = target.server_counts() if target.per_user_counts else {}
        totals_before = await target.server_totals()
        clients_before = {k: await _client_counts(fleets[k.key]) for k in ready}
        procs_before: dict[int, ProcStat | None] = {}
        for impl in ready:
            for member in fleets[impl.key].running:
                procs_before[id(member)] = member.stat()
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        marks = {impl.key: fleets[impl.key].bus.mark() for impl in ready}
        window_start = time.monotonic()

        await anyio.sleep(settings.window)

        window_end = time.monotonic()
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        procs_after: dict[int, ProcStat | None] = {}
        for impl in ready:
            for member in fleets[impl.key].running:
                procs_after[id(member)] = member.stat()
        clients_after = {k: await _client_counts(fleets[k.key]) for k in ready}
        totals_after = await target.server_totals()
        server_after = target.server_counts() if target.per_user_counts else {}
        phase.load_after = _loadavg()
        elapsed = window_end - window_start
        phase.window = elapsed
        phase.orchestrator_cpu_seconds = (cpu_after.ru_utime + cpu_after.ru_stime) - (
            cpu_before.ru_utime + cpu_before.ru_stime
        )
        if totals_before is not None and totals_after is not None:
            phase.server_totals = {
                verb: n - totals_before.get(verb, 0)
                for verb, n in totals_after.items()
                if n - totals_before.get(verb, 0)
            }

        server_window = Counter(server_after)
        server_window.subtract(server_before)
        per_user = _by_user({k: n for k, n in server_window.items() if n})
        for impl in ready:
            fleet = fleets[impl.key]
            result = results[impl.key]
            result.window = elapsed
            # The leader of the window: the last to start before it (normally the first one).
            starts = [e for e in fleet.bus.events if e.kind == "start" and e.at <= window_start]
            leader = max(starts, key=lambda e: e.at).who if starts else leaders[impl.key]
            result.leader = leader
            clients = _diff(clients_after[impl], clients_before[impl])
            for member in fleet.members:
                if isinstance(member, GoMember):
                    clients[member.identity] = dict(member.count_requests(window_start, window_end))
            result.client_counts = clients
            if target.per_user_counts:
                counts = {i: per_user.get(i, {}) for i in fleet.member_of}
                result.counted_by = "server (per user)"
            else:
                counts = {i: clients.get(i, {}) for i in fleet.member_of}
                result.counted_by = (
                    "client-side (-v=6 request log)"
                    if impl.key == "client-go"
                    else "client-side (API client)"
                )
            result.leader_requests = counts.get(leader, {})
            result.follower_requests = {i: c for i, c in counts.items() if i != leader}
            result.leader_changes = sum(
                1
                for e in fleet.bus.events[marks[impl.key] :]
                if e.kind == "start" and window_start <= e.at <= window_end
            )
            for member in fleet.members:
                before = procs_before.get(id(member))
                after = procs_after.get(id(member))
                if before is None or after is None:
                    continue
                result.processes.append(
                    ProcessFigures(
                        label=member.label,
                        electors=len(member.identities),
                        leader=leader in member.identities,
                        cpu_seconds=after.cpu_seconds - before.cpu_seconds,
                        peak_rss_mb=after.peak_rss_mb,
                    )
                )
            result.unexpected = fleet.unexpected()
        phase.results = results
    phase.seconds = time.monotonic() - started
    return phase


def per_minute(count: float, window: float) -> float:
    return count * 60.0 / window if window > 0 else math.nan
