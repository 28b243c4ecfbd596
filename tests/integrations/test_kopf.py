"""leaderelect.integrations.kopf: real kopf operators, watching Leases, run only while leading.

kopf needs an API server with the resources it watches; ours serves Leases, so the operators
here handle Lease events (their own Lease among them). What this covers:

- in-process: kopf starts only once the elector leads, its handlers see the API server, a loss
  stops kopf (cleanup handlers run) before the elector campaigns again, cancelling
  ``run_operator()`` stops kopf and releases the lease, and signal handlers are restored;
- in a child process: kopf's SIGKILL timer is armed by the bare ``leading()`` + ``kopf.operator()``
  recipe and not by ``operator()`` (the child waits past a shortened timer);
- the example, as two processes: SIGTERM stops the leader's kopf, and the other replica's kopf
  starts.

Not covered: custom resources, finalizers and other handlers that write objects (the server
has Leases only), and kopf's admission webhooks.

kopf stops every task created in its event loop after it started, so the in-process tests run
the API server in a thread of its own, as a cluster would be, and start their own tasks before
kopf does.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import anyio.from_thread
import kopf
import pytest
from _integrations import ROOT, example_process, fast_elector, take_over

from leaderelect import LeadershipLost, LeaseLock
from leaderelect.integrations.kopf import operator, run_operator
from leaderelect.testing import LeaseApiServer

LEASE = "kopf"


@pytest.fixture
def threaded_server() -> Iterator[LeaseApiServer]:
    """A Lease API server on an event loop of its own, in another thread."""
    with anyio.from_thread.start_blocking_portal() as portal:
        server = portal.call(LeaseApiServer)
        with portal.wrap_async_context_manager(server):
            yield server


class Recorder:
    """A kopf registry whose handlers report what kopf does, and when."""

    def __init__(self, server: LeaseApiServer, is_leader: Callable[[], bool]) -> None:
        self.events: list[str] = []
        self.changed = anyio.Event()
        self.registry = kopf.OperatorRegistry()
        self.settings = kopf.OperatorSettings()
        self.settings.posting.enabled = False
        self.settings.scanning.disabled = True
        registry = self.registry

        @kopf.on.login(registry=registry)
        async def login(**_: object) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=server.url, token=server.token("admin"))

        @kopf.on.startup(registry=registry)
        async def startup(**_: object) -> None:
            self.record(f"started leading={is_leader()}")

        @kopf.on.cleanup(registry=registry)
        async def cleanup(**_: object) -> None:
            self.record("stopped")

        @kopf.on.event("coordination.k8s.io", "v1", "leases", registry=registry)
        async def lease_event(name: str, spec: kopf.Spec, **_: object) -> None:
            if name == LEASE:
                self.record(f"saw holder={spec.get('holderIdentity')}")

    def record(self, event: str) -> None:
        self.events.append(event)
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, event: str, count: int = 1) -> None:
        while self.events.count(event) < count:
            await self.changed.wait()


async def test_run_operator_runs_kopf_only_while_leading(threaded_server: LeaseApiServer) -> None:
    kubeconfig = threaded_server.kubeconfig()
    handlers_before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with anyio.fail_after(20):
        async with (
            await LeaseLock.from_kubeconfig(LEASE, config_file=kubeconfig) as lock,
            await LeaseLock.from_kubeconfig(LEASE, config_file=kubeconfig) as rival_lock,
        ):
            elector = fast_elector(lock, "op")
            recorder = Recorder(threaded_server, lambda: elector.is_leader)
            rival = fast_elector(rival_lock, "rival")
            rival_leads, release_rival = anyio.Event(), anyio.Event()

            async def hold_rival() -> None:
                async with rival.leading():
                    rival_leads.set()
                    await release_rival.wait()
                recorder.record("rival released")

            async with anyio.create_task_group() as tg:
                # Every task starts before kopf does: kopf stops whatever starts after it.
                tg.start_soon(hold_rival)
                await rival_leads.wait()
                tg.start_soon(
                    lambda: run_operator(
                        elector,
                        registry=recorder.registry,
                        settings=recorder.settings,
                        namespaces=["default"],
                    )
                )
                assert recorder.events == []  # the rival leads: no kopf here
                release_rival.set()
                await recorder.wait_for("saw holder=op")
                assert recorder.events[:2] == ["rival released", "started leading=True"]

                # Another holder takes the lease for a second: kopf stops, and starts again
                # when the elector has taken the lease back.
                await take_over(threaded_server, LEASE, "intruder", seconds=1)
                await recorder.wait_for("stopped")
                assert not elector.is_leader
                await recorder.wait_for("started leading=True", count=2)
                await recorder.wait_for("saw holder=op", count=2)

                # Cancelling run_operator() stops kopf and releases the lease.
                tg.cancel_scope.cancel()
    assert recorder.events.count("stopped") == 2
    assert recorder.events[-1] == "stopped"
    lease = threaded_server.lease("default", LEASE)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == ""
    assert lease["spec"]["leaseTransitions"] == 3  # op, intruder, op again
    assert {sig: signal.getsignal(sig) for sig in handlers_before} == handlers_before


async def test_run_operator_returns_on_sigterm_while_following(
    threaded_server: LeaseApiServer,
) -> None:
    kubeconfig = threaded_server.kubeconfig()
    before = signal.getsignal(signal.SIGTERM)
    with anyio.fail_after(20):
        async with (
            await LeaseLock.from_kubeconfig(LEASE, config_file=kubeconfig) as lock,
            await LeaseLock.from_kubeconfig(LEASE, config_file=kubeconfig) as rival_lock,
            fast_elector(rival_lock, "rival").leading(),
        ):
            elector = fast_elector(lock, "follower")
            recorder = Recorder(threaded_server, lambda: elector.is_leader)
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    lambda: run_operator(
                        elector, registry=recorder.registry, settings=recorder.settings
                    )
                )
                await anyio.wait_all_tasks_blocked()  # campaigning, waiting for the rival's lease
                assert signal.getsignal(signal.SIGTERM) is not before  # ours, not the default
                os.kill(os.getpid(), signal.SIGTERM)
            assert recorder.events == []  # kopf never started
    assert signal.getsignal(signal.SIGTERM) is before


async def test_operator_inside_leading_stops_kopf_before_leading_exits(
    threaded_server: LeaseApiServer,
) -> None:
    kubeconfig = threaded_server.kubeconfig()
    with anyio.fail_after(20):
        async with await LeaseLock.from_kubeconfig(LEASE, config_file=kubeconfig) as lock:
            elector = fast_elector(lock, "recipe")
            recorder = Recorder(threaded_server, lambda: elector.is_leader)

            async def lead() -> None:
                async with elector.leading(), anyio.create_task_group() as tg:

                    async def intrude() -> None:
                        await recorder.wait_for("saw holder=recipe")
                        await take_over(threaded_server, LEASE, "intruder", seconds=15)

                    tg.start_soon(intrude)  # before kopf starts
                    await operator(
                        registry=recorder.registry,
                        settings=recorder.settings,
                        namespaces=["default"],
                    )

            with pytest.raises(LeadershipLost) as lost:
                await lead()
            # kopf stopped (its cleanup handlers ran) before leading() exited.
            assert recorder.events[-1] == "stopped"
            assert lost.value.reason.name == "OTHER_HOLDER"


@pytest.mark.parametrize(
    ("mode", "killed"),
    [pytest.param("helper", False, id="operator"), pytest.param("naive", True, id="bare")],
)
async def test_only_the_bare_recipe_arms_kopfs_sigkill_timer(
    leaderelect_server: LeaseApiServer, mode: str, killed: bool
) -> None:
    env = {**os.environ, "KUBECONFIG": str(leaderelect_server.kubeconfig())}
    child = Path(__file__).with_name("_kopf_child.py")
    with anyio.fail_after(30):
        done = await anyio.run_process([sys.executable, str(child), mode], env=env, check=False)
    output = done.stdout.decode()
    assert output.startswith("lost"), done.stderr.decode()
    if killed:
        assert done.returncode == -signal.SIGKILL, done.stderr.decode()
        assert "survived" not in output
    else:
        assert done.returncode == 0, done.stderr.decode()
        assert "survived" in output


# -- the example -------------------------------------------------------------------------------


async def test_the_kopf_example_hands_over_on_sigterm(leaderelect_server: LeaseApiServer) -> None:
    kubeconfig = leaderelect_server.kubeconfig()
    assert (ROOT / "examples" / "kopf_operator.py").is_file()
    with anyio.fail_after(40):
        async with example_process("kopf_operator.py", kubeconfig, "op-a") as (pa, out_a):
            await out_a.wait_for(lambda line: line.startswith("op-a: operator started"))
            await out_a.wait_for(lambda line: "kopf-example is held by op-a" in line)
            async with example_process("kopf_operator.py", kubeconfig, "op-b") as (pb, out_b):
                await leaderelect_server.wait_for_lease(
                    "default", "kopf-example", lambda lease: lease is not None, timeout=5
                )
                pa.send_signal(signal.SIGTERM)
                assert await pa.wait() == 0
                rest_a = await out_a.rest()
                assert "op-a: operator stopped" in rest_a
                first_b = await out_b.wait_for(lambda line: line.startswith("op-b: operator"))
                assert first_b.startswith("op-b: operator started")  # only after op-a stopped
                await out_b.wait_for(lambda line: "kopf-example is held by op-b" in line)
                pb.send_signal(signal.SIGTERM)
                assert await pb.wait() == 0
                assert "op-b: operator stopped" in await out_b.rest()
    lease = leaderelect_server.lease("default", "kopf-example")
    assert lease is not None and lease["spec"]["holderIdentity"] == ""
