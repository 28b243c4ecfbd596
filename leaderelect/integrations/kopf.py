"""kopf: run an operator only on the replica that holds the Lease, without kopf's peering.

Needs the ``kopf`` extra: ``pip install 'leaderelect[kopf]'``.

kopf's peering pauses operators through ``KopfPeering`` custom resources, which must be
installed in the cluster, and judges peers by their wall clocks. With leaderelect, every
replica campaigns for a ``coordination.k8s.io`` Lease and only the leader runs kopf, in
standalone mode (peering off):

```python
async with await LeaseLock.in_cluster("my-operator") as lock:
    await run_operator(LeaderElector(lock), clusterwide=True)
```

Why not simply ``async with elector.leading(): await kopf.operator(...)``? When that block is
cancelled (leadership lost), kopf sees a cancellation without its stop flag, takes it for a
stuck shutdown, and arms a timer that SIGKILLs the process ``ultimate_exiting_timeout`` (ten
minutes) later, even though the operator stopped at once.
[`operator()`][leaderelect.integrations.kopf.operator] stops kopf through its stop flag
instead; use it inside ``leading()`` if you write the loop yourself.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio

try:
    import kopf
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "leaderelect.integrations.kopf needs kopf: pip install 'leaderelect[kopf]'"
    ) from exc

from .. import LeaderElector, Leadership

__all__ = ["operator", "run_operator"]

logger = logging.getLogger("leaderelect.integrations")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def operator(
    *,
    registry: kopf.OperatorRegistry | None = None,
    settings: kopf.OperatorSettings | None = None,
    clusterwide: bool = False,
    namespaces: Collection[str | re.Pattern[str]] = (),
    memo: object | None = None,
    liveness_endpoint: str | None = None,
) -> None:
    """Run ``kopf.operator()`` standalone, and stop it through its stop flag when cancelled.

    The building block for running kopf inside ``leading()``:

    ```python
    async with elector.leading():
        await operator(clusterwide=True)   # kopf runs while this replica leads
    ```

    When the caller is cancelled (the term is lost, or the program shuts down), kopf's stop
    flag is set first, and kopf stops as it does for a stop request: handlers are cancelled
    (kopf gives those still running 5 s), cleanup handlers run, and no SIGKILL timer is armed.
    The cancellation then goes on.

    Returns when kopf stops by itself. In the main thread that includes SIGINT and SIGTERM:
    once kopf has started, they set its stop flag too (kopf's own handlers would leave a task
    behind that delays its exit by 5 s). When kopf has stopped, the handlers set with
    ``signal.signal()`` before it started are restored; kopf would leave its own in place.

    kopf stops *every* task created in the event loop after it started, so run nothing else
    in its loop that starts later (a web server, say); the elector's own tasks start before
    kopf and are safe.

    Args:
        registry: the handlers (by default kopf's global registry, where ``@kopf.on...``
            decorators put them).
        settings: kopf's settings; peering is switched off whatever they say.
        clusterwide: serve the whole cluster.
        namespaces: serve these namespaces (names or globs), instead of the whole cluster.
        memo: kopf's operator-wide ``memo``.
        liveness_endpoint: kopf's own liveness endpoint, such as ``"http://0.0.0.0:8080/healthz"``
            (served only while kopf runs, that is by the leader).
    """
    options = _Options(registry, settings, clusterwide, namespaces, memo, liveness_endpoint)
    with _signals_restored() as install:
        await _run_kopf(options, on_started=install)


async def run_operator(
    elector: LeaderElector,
    *,
    registry: kopf.OperatorRegistry | None = None,
    settings: kopf.OperatorSettings | None = None,
    clusterwide: bool = False,
    namespaces: Collection[str | re.Pattern[str]] = (),
    memo: object | None = None,
    liveness_endpoint: str | None = None,
) -> None:
    """Run a kopf operator whenever this replica leads; campaign again after a loss.

    The whole main program of a highly available operator: campaign for the lease; when won,
    run [`operator()`][leaderelect.integrations.kopf.operator]; when the lease is lost, stop
    kopf and campaign again. Only one replica runs kopf at a time, and the lease is released
    only after kopf has stopped.

    Returns, after releasing the lease, on SIGINT or SIGTERM, or when kopf stops by itself.
    In the main thread, the signals stop the campaign, or make the leader step down: kopf is
    stopped through its stop flag while the lease is still renewed, then the lease is
    released ([`LeaderElector.lead()`][leaderelect.LeaderElector.lead]); the previous handlers
    are restored when it returns. Exceptions from kopf propagate, also after the release.

    Args:
        elector: the elector to campaign with.
        registry: see [`operator()`][leaderelect.integrations.kopf.operator].
        settings: see [`operator()`][leaderelect.integrations.kopf.operator].
        clusterwide: see [`operator()`][leaderelect.integrations.kopf.operator].
        namespaces: see [`operator()`][leaderelect.integrations.kopf.operator].
        memo: see [`operator()`][leaderelect.integrations.kopf.operator].
        liveness_endpoint: see [`operator()`][leaderelect.integrations.kopf.operator].

    Example:
        ```python
        async def main() -> None:
            async with await LeaseLock.in_cluster("my-operator") as lock:
                await run_operator(LeaderElector(lock), clusterwide=True)

        anyio.run(main)
        ```
    """
    options = _Options(registry, settings, clusterwide, namespaces, memo, liveness_endpoint)
    stop = anyio.Event()
    with _signals_restored() as install:
        install(stop.set)  # a signal stops the campaign, or makes the leader step down

        async def term(leadership: Leadership) -> None:
            # kopf puts its own handlers in place as it starts: put ours back.
            await _run_kopf(options, on_started=lambda _: install(stop.set))

        await elector.lead(term, stop=stop)
    if stop.is_set():
        logger.info("stopped by a signal")


@dataclass(frozen=True)
class _Options:
    """The arguments of ``kopf.operator()`` that ``operator()`` and ``run_operator()`` pass on."""

    registry: kopf.OperatorRegistry | None
    settings: kopf.OperatorSettings | None
    clusterwide: bool
    namespaces: Collection[str | re.Pattern[str]]
    memo: object | None
    liveness_endpoint: str | None


async def _run_kopf(options: _Options, *, on_started: Callable[[Callable[[], None]], None]) -> None:
    """Run kopf standalone until it stops by itself; when cancelled, stop it
    through its stop flag first (shielded), then let the cancellation go on.

    ``on_started(stop_kopf)`` is called once kopf has started (and put its signal handlers
    in place), unless this function has returned by then.
    """
    loop = asyncio.get_running_loop()
    stop_flag = asyncio.Event()
    ready_flag: asyncio.Future[None] = loop.create_future()
    finished = anyio.Event()
    failures: list[Exception] = []

    async def run() -> None:
        # kopf must stop through its flag, never through a bare cancellation: shield it.
        with anyio.CancelScope(shield=True):
            try:
                await kopf.operator(
                    registry=options.registry,
                    settings=options.settings,
                    clusterwide=options.clusterwide,
                    namespaces=options.namespaces,
                    memo=options.memo,
                    liveness_endpoint=options.liveness_endpoint,
                    standalone=True,
                    stop_flag=stop_flag,
                    ready_flag=ready_flag,
                )
            except Exception as exc:
                failures.append(exc)
            finally:
                finished.set()

    running = True

    def ready(_: asyncio.Future[None]) -> None:
        if running:
            on_started(stop_flag.set)

    ready_flag.add_done_callback(ready)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            try:
                await finished.wait()
            finally:
                if not finished.is_set():
                    logger.info("stopping kopf")
                    stop_flag.set()
                    with anyio.CancelScope(shield=True):
                        await finished.wait()
    finally:
        running = False
    if failures:
        raise failures[0]


@contextmanager
def _signals_restored() -> Iterator[Callable[[Callable[[], object]], None]]:
    """Handle SIGINT and SIGTERM in the block, in the main thread; restore the handlers after.

    Yields ``install(callback)``, which makes both signals call ``callback`` (again: kopf
    replaces the handlers as it starts). On exit the loop's handlers are removed and the
    Python-level handlers found on entry restored. Outside the main thread nothing is done,
    as signals can only be handled there.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda callback: None
        return
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}

    def install(callback: Callable[[], object]) -> None:
        for sig in _SIGNALS:
            loop.add_signal_handler(sig, callback)

    try:
        yield install
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            if handler is not None:
                signal.signal(sig, handler)
