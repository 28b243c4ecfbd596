"""A coordinated candidate's LeaseCandidate: registered, kept fresh, withdrawn.

In coordinated leader election (KEP-4355) kube-apiserver's controller chooses the holder among
the LeaseCandidates of a Lease. It elects only candidates that answered recently: when ours is
older than a few seconds it *pings* it (writes ``spec.pingTime``) and waits for an answer (a
``renewTime`` later than the ping). We watch our LeaseCandidate and answer at once, so an
election never waits for us; we renew it every few minutes besides, as client-go does, so
that the controller never finds it stale. On the way out we delete it *before* the Lease is
released, so the controller picks the next holder among the candidates left, in milliseconds.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, final

import anyio

from ._backoff import RetryPacer
from ._clock import Clock
from ._config import Timings
from ._errors import ConfigError, LeaseConflict, LeaseError, LeaseInvalid, WatchExpired
from ._lease_client import CandidateClient, LeaseSnapshot, WatchEventType
from ._problems import is_persistent
from ._record import format_micro_time, parse_micro_time
from ._tasks import BackgroundTasks

__all__ = [
    "OLDEST_EMULATION_VERSION",
    "Candidacy",
    "CandidateSettings",
    "candidate_identity",
    "candidate_settings",
    "pinged",
]

logger = logging.getLogger(__name__)

OLDEST_EMULATION_VERSION = "OldestEmulationVersion"
"""The built-in strategy: the lowest emulation version leads, then the lowest binary version,
then the oldest candidate."""

# What kube-apiserver accepts: a semantic version (no "v"), and an object name.
_SEMVER = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True, slots=True)
class CandidateSettings:
    """What a coordinated candidate registers, validated."""

    binary_version: str
    emulation_version: str
    strategy: str


def candidate_settings(
    identity: str,
    *,
    binary_version: str | None,
    emulation_version: str | None,
    strategy: str,
) -> CandidateSettings:
    """Check a coordinated candidate's settings as kube-apiserver would, at construction.

    Raises:
        ConfigError: naming the setting that kube-apiserver would reject.
    """
    if binary_version is None:
        raise ConfigError(
            "coordinated=True needs binary_version (the version of this binary, e.g. "
            '"1.36.0"): the controller ranks candidates by it'
        )
    emulation = binary_version if emulation_version is None else emulation_version
    for setting, value in (("binary_version", binary_version), ("emulation_version", emulation)):
        if not isinstance(value, str) or not _SEMVER.fullmatch(value):
            raise ConfigError(
                f"{setting} must be a semantic version such as 1.36.0 (no leading v), got {value!r}"
            )
    if _release(emulation) > _release(binary_version):
        raise ConfigError(
            f"emulation_version {emulation} must not be greater than binary_version "
            f"{binary_version}"
        )
    if not isinstance(strategy, str) or not strategy:
        raise ConfigError(f"strategy must be a non-empty string, got {strategy!r}")
    if strategy != OLDEST_EMULATION_VERSION and "/" not in strategy:
        raise ConfigError(
            f"strategy must be {OLDEST_EMULATION_VERSION!r} or a custom strategy with a "
            f"domain prefix (example.com/mine), got {strategy!r}"
        )
    if len(identity) > 253 or not _DNS_SUBDOMAIN.fullmatch(identity):
        raise ConfigError(
            f"identity {identity!r} cannot name a LeaseCandidate: in coordinated election "
            "the identity is the LeaseCandidate's name, a lowercase RFC 1123 subdomain "
            "(letters, digits, '-' and '.'; e.g. the pod name)"
        )
    return CandidateSettings(binary_version, emulation, strategy)


def candidate_identity(identity: str) -> str:
    """``identity`` made a valid LeaseCandidate name (for the default identity)."""
    name = re.sub(r"[^a-z0-9.-]+", "-", identity.lower()).strip("-.")
    return name[:253].rstrip("-.") or "candidate"


def _release(version: str) -> tuple[int, int, int]:
    major, minor, patch = version.split("+")[0].split("-")[0].split(".")
    return int(major), int(minor), int(patch)


# client-go renews its LeaseCandidate every 5 minutes; the controller forces an election when a
# candidate is 15 minutes stale.
_RENEW_EVERY = 300.0
_WATCH_SECONDS = (240, 300)


@final
class Candidacy:
    """Our LeaseCandidate for the life of an ``async with`` block (see the module docstring).

    Registering never blocks the block: failures are retried in the background, and a
    persistent one (RBAC, the API not served) is kept in :attr:`problem`.
    """

    def __init__(
        self,
        client: CandidateClient,
        *,
        lease_name: str,
        settings: CandidateSettings,
        timings: Timings,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self._client = client
        self._lease_name = lease_name
        self._settings = settings
        self._timings = timings
        self._clock = clock
        self._rng = rng
        self._tasks = BackgroundTasks()
        self._keeper = anyio.CancelScope()
        self._kept = anyio.Event()
        self._withdrawn = False
        self.problem: LeaseError | None = None
        """The last persistent error registering or renewing, until one succeeds."""
        self.registered = anyio.Event()
        """Set once the LeaseCandidate has been written."""

    def spec(self, now: datetime) -> dict[str, Any]:
        """Our LeaseCandidate's spec, renewed at ``now`` (no ``pingTime``: an answer)."""
        return {
            "leaseName": self._lease_name,
            "binaryVersion": self._settings.binary_version,
            "emulationVersion": self._settings.emulation_version,
            "strategy": self._settings.strategy,
            "renewTime": format_micro_time(now),
        }

    async def __aenter__(self) -> Candidacy:
        task_group = await self._tasks.__aenter__()
        task_group.start_soon(self._keep)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self.withdraw()
        finally:
            await self._tasks.close()

    async def withdraw(self) -> None:
        """Stop answering and delete our LeaseCandidate (bounded by ``renew_deadline``).

        Idempotent. Called before the Lease is released, so that the controller does not
        hand the Lease back to us.
        """
        if self._withdrawn:
            return
        self._withdrawn = True
        # Stop the keeper and wait for it, so that no write of it lands after the delete.
        self._keeper.cancel()
        await self._kept.wait()
        timings = self._timings
        pacer = RetryPacer("withdrawing candidate", self._client.candidate, 0.1, self._rng)
        with anyio.move_on_after(timings.renew_deadline) as bound:
            while True:
                try:
                    await self._client.delete(timeout=timings.renew_deadline / 2)
                except LeaseError as exc:
                    await anyio.sleep(pacer.failed(exc))
                    continue
                logger.info("lease candidate %s withdrawn", self._client.candidate)
                return
        if bound.cancelled_caught:
            logger.warning(
                "could not delete lease candidate %s within %gs; the controller may elect "
                "it until it goes stale",
                self._client.candidate,
                timings.renew_deadline,
            )

    # -- keeping it fresh -----------------------------------------------------------------

    async def _keep(self) -> None:
        try:
            with self._keeper:
                await self._keep_fresh()
        finally:
            self._kept.set()

    async def _keep_fresh(self) -> None:
        pacer = RetryPacer(
            "registering candidate",
            self._client.candidate,
            self._timings.retry_period,
            self._rng,
        )
        known: LeaseSnapshot | None = None
        while True:
            try:
                known = await self._register(known)
                self.problem = None
                pacer.succeeded()
                self.registered.set()
                known = await self._answer_pings(known)
            except LeaseError as exc:
                if is_persistent(exc):
                    self.problem = exc
                known = None
                await anyio.sleep(pacer.failed(exc))

    async def _register(self, known: LeaseSnapshot | None) -> LeaseSnapshot:
        """Write our spec with ``renewTime`` now (create, or update what is there)."""
        timeout = self._timings.renew_deadline / 2
        while True:
            current = known if known is not None else await self._client.get(timeout=timeout)
            if current is not None:
                self._check_same_lease(current)
            spec = self.spec(self._clock.utcnow())
            try:
                if current is None:
                    written = await self._client.create(spec, timeout=timeout)
                else:
                    written = await self._client.update(spec, base=current, timeout=timeout)
            except LeaseConflict:
                known = None  # changed (a ping) or created meanwhile: read and write again
                continue
            logger.debug("lease candidate %s renewed", self._client.candidate)
            return written

    def _check_same_lease(self, current: LeaseSnapshot) -> None:
        """A LeaseCandidate of our name for another Lease cannot be ours (``leaseName`` is
        immutable): two electors share an identity, or a process left it behind."""
        spec = current.obj.get("spec")
        lease_name = spec.get("leaseName") if isinstance(spec, Mapping) else None
        if lease_name != self._lease_name:
            raise LeaseInvalid(
                f"lease candidate {self._client.candidate} already exists for lease "
                f"{lease_name!r}, not {self._lease_name!r}: in coordinated election the "
                "identity names the LeaseCandidate, so it must be unique per Lease in its "
                "namespace (delete the stale LeaseCandidate, or give each elector its own "
                "identity)",
                lease=self._client.candidate,
                verb="update",
            )

    async def _answer_pings(self, snapshot: LeaseSnapshot) -> LeaseSnapshot | None:
        """Watch our LeaseCandidate until it is pinged, deleted, or due for renewal; returns
        what to base the next write on (``None``: read it first)."""
        resource_version = snapshot.resource_version
        with anyio.move_on_after(_RENEW_EVERY):
            while True:
                try:
                    async with self._client.watch(
                        resource_version=resource_version,
                        timeout_seconds=self._rng.randint(*_WATCH_SECONDS),
                    ) as events:
                        async for event in events:
                            resource_version = event.resource_version
                            if event.type is WatchEventType.DELETED:
                                logger.info(
                                    "lease candidate %s was deleted; registering again",
                                    self._client.candidate,
                                )
                                return None
                            if event.snapshot is None:
                                continue  # a bookmark
                            snapshot = event.snapshot
                            if pinged(snapshot.obj):
                                logger.debug("lease candidate %s pinged", self._client.candidate)
                                return snapshot
                except WatchExpired:
                    return None
        return snapshot


def pinged(candidate: Mapping[str, Any]) -> bool:
    """True when the controller's ``pingTime`` is later than the candidate's ``renewTime``."""
    spec = candidate.get("spec")
    if not isinstance(spec, Mapping):
        return False
    ping = _time(spec.get("pingTime"))
    if ping is None:
        return False
    renew = _time(spec.get("renewTime"))
    return renew is None or ping > renew


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_micro_time(value)
    except ValueError:
        return None
