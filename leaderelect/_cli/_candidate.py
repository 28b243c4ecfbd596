"""One candidate of ``leaderelect demo``: ``python -m leaderelect._cli._candidate ...``.

The demo starts one such process per candidate (see ``_demo``). Each is
``LeaseLock.from_kubeconfig`` plus ``LeaderElector.lead()``, doing visible work while it
leads and saying so on stdout, which the demo relays. A candidate steps down on SIGTERM or
SIGINT, and also when its stdin reaches end of file, which is how it notices that the demo
itself died (even by SIGKILL): no orphans either way.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from .. import ConfigError, LeaderElector, Leadership, LeaseLock, Timings
from ._demo import CANDIDATE_PROGRAM, DEMO_TIMINGS, WORK_INTERVAL
from ._options import add_timings, seconds, timings_of, usage_error, verbosity_options
from ._output import EXIT_INTERRUPTED, configure_logging, err, out

__all__ = ["main"]


def _say(text: str) -> None:
    """A candidate's one way to speak: a line on stdout, which the demo relays."""
    try:
        out(text)
    except (BrokenPipeError, ValueError):  # the demo is gone; the stdin watch stops us
        pass


@dataclass(frozen=True, slots=True)
class _CandidateOptions:
    kubeconfig: Path
    lease: str
    namespace: str
    identity: str
    timings: Timings
    work_interval: float
    stop_on_stdin_eof: bool


async def _work(interval: float, stop: anyio.Event, leadership: Leadership) -> None:
    """A leader's visible work: a line every ``interval`` seconds, until cancelled."""
    _say(f"leading: won term {leadership.token.transitions}, working")
    step = 0
    try:
        while True:
            await anyio.sleep(interval)
            step += 1
            _say(
                f"work step {step} (term {leadership.token.transitions}, "
                f"leadership guaranteed for {leadership.time_left():.1f}s)"
            )
    finally:
        if stop.is_set():
            _say("stepping down: the lease is released once the work has stopped")


async def _term_ended(leadership: Leadership) -> None:
    if leadership.loss_reason is not None:
        _say(f"lost the lease ({leadership.loss_reason.value}); campaigning again")
    else:
        _say("stepped down")


async def _stop_on_signals(
    stop: anyio.Event, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            if not stop.is_set():
                _say(f"{signal.Signals(signum).name} received")
                stop.set()


async def _stop_on_stdin_eof(stop: anyio.Event) -> None:
    """Stop when stdin reaches end of file: the demo that holds its other end has exited."""
    fd = sys.stdin.fileno()
    while True:
        await anyio.wait_readable(fd)
        if not os.read(fd, 4096):
            break
    if not stop.is_set():
        _say("the demo has gone away; stopping")
        stop.set()


async def _run_candidate(options: _CandidateOptions) -> int:
    try:
        lock = await LeaseLock.from_kubeconfig(
            options.lease, options.namespace, config_file=options.kubeconfig
        )
    except ConfigError as exc:
        err(f"error: {exc}")
        return 1
    stop = anyio.Event()
    async with lock, anyio.create_task_group() as tg:
        elector = LeaderElector(lock, identity=options.identity, timings=options.timings)
        await tg.start(_stop_on_signals, stop)  # before saying "campaigning"
        if options.stop_on_stdin_eof:
            tg.start_soon(_stop_on_stdin_eof, stop)
        _say(f"campaigning for lease {elector.lease}")
        work = partial(_work, options.work_interval, stop)
        await elector.lead(work, stop=stop, on_term_end=_term_ended)
        tg.cancel_scope.cancel()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m leaderelect._cli._candidate ...``: one candidate of the demo (internal)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {CANDIDATE_PROGRAM}",
        description="One candidate of `leaderelect demo` (started by the demo itself).",
        parents=[verbosity_options()],
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--lease", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--identity", required=True)
    add_timings(parser, DEMO_TIMINGS, renew_deadline_help="how long a leader works unrenewed")
    parser.add_argument("--work-interval", type=seconds, default=WORK_INTERVAL)
    parser.add_argument("--stop-on-stdin-eof", action="store_true")
    args = parser.parse_args(argv)
    try:
        timings = timings_of(args)
    except ConfigError as exc:
        usage_error(parser, exc)
    configure_logging(args.verbose, timestamps=False)
    options = _CandidateOptions(
        kubeconfig=args.kubeconfig,
        lease=args.lease,
        namespace=args.namespace,
        identity=args.identity,
        timings=timings,
        work_interval=args.work_interval,
        stop_on_stdin_eof=args.stop_on_stdin_eof,
    )
    try:
        return anyio.run(_run_candidate, options)
    except KeyboardInterrupt:  # only before the signal receiver is installed
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
