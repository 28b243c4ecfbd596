"""One candidate process of the benchmark: one or more electors of one implementation.

``python -m benchmarks._candidate --impl ours --lease NAME --elector ID=KUBECONFIG ...``

Every elector has its own identity and its own API client (so its own server user where the
kubeconfig says so), and campaigns at once. The orchestrator drives the process through its
stdin, one command a line:

* ``stepdown ID``: if ID leads, its work ends and it leaves its term (ours: the ``leading()``
  block, which releases the lease; kubernetes_asyncio: its work returns and ``run()`` is
  cancelled, releasing nothing); it does not campaign again until told to;
* ``campaign ID``: ID campaigns again;
* ``report``: print the requests each elector has sent so far, counted in the client;
* end of file: stop everything (ours still release a held lease on the way out) and exit.

The process speaks through stdout, one line each, stamped with ``time.monotonic()``
(CLOCK_MONOTONIC, one clock for every process on the machine)::

    EV <monotonic> <identity> <kind> [detail]
    COUNTS <json: {identity: {verb: count}}>

with the kinds ``campaign`` (a campaign starts), ``following`` (its first read of the Lease is
done), ``start`` (its work starts: the first statement of the leader's body), ``renewed`` (a
renewal answered), ``end`` (the last statement of the leader's body, on ``stepdown``),
``lost`` (a term lost without being asked to step down).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import kubernetes_asyncio.client
import kubernetes_asyncio.config

from leaderelect import LeaderElector, LeadershipLost, LeaseLock, LossReason

IMPLEMENTATIONS = ("ours", "ours-poll", "k8sa")
"""leaderelect watching the Lease, leaderelect polling it (``watch=False``), and
``kubernetes_asyncio.leaderelection``."""

_FOLLOWING_POLL = 0.005
"""Seconds between two looks, while campaigning, for the first read of the Lease."""


def emit(identity: str, kind: str, detail: str = "") -> None:
    """Print one event line, stamped now; the stamp is taken before anything else."""
    now = time.monotonic()
    line = f"EV {now:.6f} {identity} {kind} {detail}".rstrip()
    try:
        print(line, flush=True)
    except (BrokenPipeError, ValueError):  # the orchestrator is gone; stdin's EOF stops us
        pass


def request_verb(method: str, url: str, query: object) -> str:
    """The Kubernetes verb of one request, as the server would count it."""
    method = method.upper()
    if method == "GET":
        pairs: list[tuple[str, object]] = []
        if isinstance(query, dict):
            pairs = list(query.items())
        elif isinstance(query, (list, tuple)):
            pairs = [tuple(p) for p in query if isinstance(p, (list, tuple)) and len(p) == 2]
        if any(k == "watch" and str(v).lower() not in ("0", "false") for k, v in pairs):
            return "watch"
        path = urlsplit(url).path.rstrip("/")
        return "list" if path.endswith("/leases") else "get"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }.get(method, method.lower())


async def counting_client(kubeconfig: str, counts: Counter[str]) -> Any:
    """A kubernetes_asyncio ApiClient for ``kubeconfig`` that counts each request it sends."""
    configuration = kubernetes_asyncio.client.Configuration()
    await kubernetes_asyncio.config.load_kube_config(
        config_file=kubeconfig, client_configuration=configuration, persist_config=False
    )
    api_client = kubernetes_asyncio.client.ApiClient(configuration)
    rest: Any = api_client.rest_client
    send = rest.request

    async def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        counts[request_verb(method, url, kwargs.get("query_params"))] += 1
        return await send(method, url, *args, **kwargs)

    rest.request = request
    return api_client


@dataclass
class Options:
    impl: str
    lease: str
    namespace: str
    lease_duration: float
    renew_deadline: float
    retry_period: float
    electors: list[tuple[str, str]]


@dataclass
class Slot:
    """One elector of this process and what the orchestrator told it."""

    identity: str
    kubeconfig: str
    counts: Counter[str] = field(default_factory=Counter)
    permitted: anyio.Event = field(default_factory=anyio.Event)
    stepdown: anyio.Event = field(default_factory=anyio.Event)
    ended: anyio.Event = field(default_factory=anyio.Event)

    def __post_init__(self) -> None:
        self.permitted.set()


async def _report_following(identity: str, read: Callable[[], bool]) -> None:
    """Say ``following`` once ``read()`` is true (the first read of the Lease is done)."""
    # Neither library says when its first read is done, so look for its effect.
    while not read():  # noqa: ASYNC110
        await anyio.sleep(_FOLLOWING_POLL)
    emit(identity, "following")


class _RenewalMetrics:
    """leaderelect's metrics sink, used only to announce each renewal."""

    def __init__(self, identity: str) -> None:
        self._identity = identity

    def leading_changed(self, lease: str, leading: bool) -> None:
        pass

    def acquired(self, lease: str, waited: float, transitions: int) -> None:
        pass

    def renewed(self, lease: str, latency: float) -> None:
        emit(self._identity, "renewed", f"{latency:.6f}")

    def renew_failed(self, lease: str, error: str) -> None:
        emit(self._identity, "renew-failed", error)

    def slow_path(self, lease: str) -> None:
        emit(self._identity, "slow-path")

    def lost(self, lease: str, reason: LossReason) -> None:
        pass


async def _wait_step_down(slot: Slot) -> None:
    """After a step-down, wait for permission to campaign again.

    The permission was withdrawn when ``stepdown`` arrived (see :func:`_commands`), so a
    ``campaign`` that comes before this point is not lost.
    """
    slot.stepdown = anyio.Event()
    slot.ended = anyio.Event()
    await slot.permitted.wait()


async def run_ours(slot: Slot, options: Options, *, watch: bool) -> None:
    """leaderelect: ``leading()`` in a loop; work is waiting for ``stepdown``."""
    api_client = await counting_client(slot.kubeconfig, slot.counts)
    async with api_client:
        lock = LeaseLock(api_client, options.lease, options.namespace)
        elector = LeaderElector(
            lock,
            identity=slot.identity,
            lease_duration=options.lease_duration,
            renew_deadline=options.renew_deadline,
            retry_period=options.retry_period,
            watch=watch,
            metrics=_RenewalMetrics(slot.identity),
        )
        while True:
            await slot.permitted.wait()
            emit(slot.identity, "campaign")
            stepped_down = False
            reporter = anyio.CancelScope()

            async def report_following(scope: anyio.CancelScope = reporter) -> None:
                with scope:
                    await _report_following(slot.identity, lambda: elector.leader is not None)

            async with anyio.create_task_group() as tg:
                tg.start_soon(report_following)
                try:
                    async with elector.leading() as leadership:
                        emit(slot.identity, "start", str(leadership.token.transitions))
                        reporter.cancel()
                        await slot.stepdown.wait()
                        emit(slot.identity, "end")
                        stepped_down = True
                except LeadershipLost as lost:
                    emit(slot.identity, "lost", lost.reason.value)
                finally:
                    reporter.cancel()
            if stepped_down:
                emit(slot.identity, "released")
                await _wait_step_down(slot)


def k8sa_config_problems(lease_duration: float, renew_deadline: float, retry_period: float) -> str:
    """What kubernetes_asyncio's ``Config`` would reject in these timings ("" when nothing)."""
    problems = []
    if retry_period < 1:
        problems.append("retry_period < 1 s")
    if renew_deadline < 1:
        problems.append("renew_deadline < 1 s")
    if lease_duration < 1:
        problems.append("lease_duration < 1 s")
    return ", ".join(problems)


async def run_k8sa(slot: Slot, options: Options) -> None:
    """kubernetes_asyncio.leaderelection: a fresh ``LeaderElection.run()`` per term.

    Its ``Config`` refuses timings under one second; it is built with valid ones and then given
    ours (its algorithm reads them from the attributes). It writes ``int(lease_duration)``
    from a string, so the lease duration must be whole seconds.
    """
    from kubernetes_asyncio.leaderelection.electionconfig import Config
    from kubernetes_asyncio.leaderelection.leaderelection import LeaderElection
    from kubernetes_asyncio.leaderelection.resourcelock.leaselock import (
        LeaseLock as K8saLeaseLock,
    )

    api_client = await counting_client(slot.kubeconfig, slot.counts)
    async with api_client:
        lock: Any = K8saLeaseLock(options.lease, options.namespace, slot.identity, api_client)
        update = lock.update

        async def announced_update(name: str, namespace: str, record: Any) -> bool:
            ok = bool(await update(name, namespace, record))
            if ok:
                emit(slot.identity, "renewed")
            return ok

        lock.update = announced_update
        duration: float = options.lease_duration
        if float(duration).is_integer():
            duration = int(duration)
        while True:
            await slot.permitted.wait()
            emit(slot.identity, "campaign")

            async def work() -> None:
                emit(slot.identity, "start")
                await slot.stepdown.wait()
                emit(slot.identity, "end")
                slot.ended.set()

            async def stopped() -> None:
                pass

            config = Config(
                lock,
                lease_duration=max(3, duration),
                renew_deadline=2,
                retry_period=1,
                onstarted_leading=work,
                onstopped_leading=stopped,
            )
            config.lease_duration = duration
            config.renew_deadline = options.renew_deadline
            config.retry_period = options.retry_period
            election = LeaderElection(config)
            returned = anyio.Event()

            async def run(election: Any = election, returned: anyio.Event = returned) -> None:
                await election.run()
                returned.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    _report_following,
                    slot.identity,
                    lambda election=election: election.observed_record is not None,
                )
                tg.start_soon(run)
                await _first_of(slot.ended.wait, returned.wait)
                tg.cancel_scope.cancel()
            if slot.ended.is_set():
                emit(slot.identity, "released", "nothing released: the lease runs out")
                await _wait_step_down(slot)
            else:
                emit(slot.identity, "lost", "renewal failed")


async def _first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as one of ``waits`` returns."""
    async with anyio.create_task_group() as tg:

        async def one(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            tg.cancel_scope.cancel()

        for wait in waits:
            tg.start_soon(one, wait)


async def _commands(slots: dict[str, Slot]) -> None:
    """Obey stdin's commands until end of file."""
    fd = sys.stdin.fileno()
    pending = b""
    while True:
        await anyio.wait_readable(fd)
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for raw in lines:
            words = raw.decode().split()
            if not words:
                continue
            command, args = words[0], words[1:]
            if command == "report":
                counts = {s.identity: dict(s.counts) for s in slots.values()}
                print(f"COUNTS {json.dumps(counts, sort_keys=True)}", flush=True)
            elif command == "stepdown" and args and args[0] in slots:
                slot = slots[args[0]]
                slot.permitted = anyio.Event()  # until "campaign"
                slot.stepdown.set()
            elif command == "campaign" and args and args[0] in slots:
                slots[args[0]].permitted.set()
            else:
                sys.stderr.write(f"candidate: unknown command {raw!r}\n")


async def amain(options: Options) -> None:
    slots = {identity: Slot(identity, kubeconfig) for identity, kubeconfig in options.electors}
    async with anyio.create_task_group() as tg:
        for slot in slots.values():
            if options.impl == "k8sa":
                tg.start_soon(run_k8sa, slot, options)
            else:
                tg.start_soon(partial(run_ours, slot, options, watch=options.impl == "ours"))
        await _commands(slots)
        tg.cancel_scope.cancel()


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._candidate")
    parser.add_argument("--impl", choices=IMPLEMENTATIONS, required=True)
    parser.add_argument("--lease", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--lease-duration", type=float, required=True)
    parser.add_argument("--renew-deadline", type=float, required=True)
    parser.add_argument("--retry-period", type=float, required=True)
    parser.add_argument("--elector", action="append", required=True, metavar="IDENTITY=KUBECONFIG")
    args = parser.parse_args(argv)
    electors = []
    for spec in args.elector:
        identity, sep, kubeconfig = spec.partition("=")
        if not sep or not identity or not Path(kubeconfig).is_file():
            parser.error(f"--elector {spec!r}: want IDENTITY=KUBECONFIG (an existing file)")
        electors.append((identity, kubeconfig))
    if not all(math.isfinite(v) for v in (args.lease_duration, args.renew_deadline)):
        parser.error("timings must be finite")
    return Options(
        impl=args.impl,
        lease=args.lease,
        namespace=args.namespace,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
        electors=electors,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    anyio.run(amain, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
