"""The ``leaderelect`` command (also ``python -m leaderelect``): argument parsing, nothing else.

``demo`` runs :func:`leaderelect._demo.run_demo`; ``serve`` runs the embedded Lease API server
with :func:`leaderelect.testing.serve`; ``run`` runs :func:`leaderelect._sidecar.run_sidecar`;
``status`` and ``watch`` run :func:`leaderelect._inspect.show_status` and
:func:`leaderelect._inspect.watch_lease`. Output goes through :func:`out` (stdout) and, for
``run``'s own lines and every error, its stderr twin; logging is configured here and only here
(WARNING by default, ``-v`` for INFO, ``-vv`` for DEBUG).

Exit statuses: 0 success; 1 a runtime error (a bad kubeconfig, a missing Lease, a denied
request), one line on stderr; 2 a usage error; 128 + N after signal N (130 for Ctrl-C); ``run``
also exits with its command's status, or 75 after losing the lease.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._connect import LeaseTarget

    _Commands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["configure_logging", "main", "out"]

_EXIT_INTERRUPTED = 130
_LOG_HANDLER = "leaderelect-cli"


def out(text: str = "") -> None:
    """Write one line of the command's output to stdout, at once."""
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def configure_logging(verbosity: int, *, timestamps: bool = True) -> None:
    """Log leaderelect's records to stderr: WARNING by default, INFO at 1, DEBUG at 2.

    Other libraries stay at WARNING, whatever the verbosity (aiohttp's access log is INFO).
    Calling it again replaces the handler it installed before. ``timestamps=False`` is for
    the demo's candidates, whose lines the demo prefixes with its own time.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.name = _LOG_HANDLER
    layout = "%(levelname)-7s %(name)s: %(message)s"
    handler.setFormatter(
        logging.Formatter("%(asctime)s " + layout if timestamps else layout, "%H:%M:%S")
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == _LOG_HANDLER]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    levels = {0: logging.WARNING, 1: logging.INFO}
    logging.getLogger("leaderelect").setLevel(levels.get(verbosity, logging.DEBUG))


# -- argument types: each raises ArgumentTypeError, which argparse turns into exit 2 ---------


def _seconds(text: str) -> float:
    value = _number_of_seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _seconds_or_zero(text: str) -> float:
    value = _number_of_seconds(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def _number_of_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, got {text}")
    return value


def _candidates(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"must be at least 2 (one leader and one to take over), got {value}"
        )
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


# -- the parser ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from ._demo import DEMO_TIMINGS, DemoSettings

    parser = argparse.ArgumentParser(
        prog="leaderelect",
        description="Asyncio-native Kubernetes leader election on coordination.k8s.io Leases.",
        epilog="Start with `leaderelect demo`: no cluster needed.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    commands.required = True

    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log leaderelect's INFO records to stderr (-vv: DEBUG)",
    )

    defaults = DemoSettings()
    demo = commands.add_parser(
        "demo",
        parents=[verbosity],
        help="watch candidate processes elect a leader, and time two takeovers",
        description=(
            "Start an embedded Lease API server and N candidate processes, show who leads, "
            "then stop the leader gracefully (SIGTERM) and kill the next one (SIGKILL), "
            "timing each takeover. No cluster needed."
        ),
    )
    demo.add_argument(
        "--candidates",
        type=_candidates,
        default=defaults.candidates,
        metavar="N",
        help="candidate processes to start (at least 2; default %(default)s)",
    )
    demo.add_argument(
        "--lease-duration",
        type=_seconds,
        default=DEMO_TIMINGS.lease_duration,
        metavar="SECONDS",
        help="how long followers wait for an abandoned lease (default %(default)gs)",
    )
    demo.add_argument(
        "--renew-deadline",
        type=_seconds,
        default=DEMO_TIMINGS.renew_deadline,
        metavar="SECONDS",
        help="how long a leader keeps working without a renewal (default %(default)gs)",
    )
    demo.add_argument(
        "--retry-period",
        type=_seconds,
        default=DEMO_TIMINGS.retry_period,
        metavar="SECONDS",
        help="time between renewals and retries (default %(default)gs)",
    )
    demo.add_argument(
        "--hold",
        type=_seconds_or_zero,
        default=defaults.hold,
        metavar="SECONDS",
        help="how long each leader works before it is stopped (default %(default)gs)",
    )
    demo.add_argument(
        "--lease",
        default=defaults.lease,
        metavar="NAME",
        help="the Lease's name (default %(default)s)",
    )
    demo.set_defaults(handler=_demo)

    serve = commands.add_parser(
        "serve",
        parents=[verbosity],
        help="run the embedded Lease API server for local development",
        description=(
            "Run leaderelect's in-process Lease API server (the one tests use) until "
            "interrupted, and print the path of an admin kubeconfig for it."
        ),
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    serve.add_argument(
        "--port",
        type=_port,
        default=0,
        help="port to listen on (default: any free port)",
    )
    serve.set_defaults(handler=_serve)

    _add_run(commands, verbosity)
    _add_status(commands, verbosity)
    _add_watch(commands)
    return parser


def _connection_options() -> argparse.ArgumentParser:
    """``--namespace``, ``--kubeconfig`` and ``--context``, shared by run, status and watch."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("connection")
    group.add_argument(
        "-n",
        "--namespace",
        metavar="NS",
        help="the Lease's namespace (default: the kubeconfig context's, or the pod's own)",
    )
    group.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="PATH",
        help="kubeconfig file (default: $KUBECONFIG, else the pod's service account when "
        "in a pod, else ~/.kube/config)",
    )
    group.add_argument("--context", metavar="NAME", help="kubeconfig context to use")
    return options


def _add_run(commands: _Commands, verbosity: argparse.ArgumentParser) -> None:
    from ._config import Timings
    from ._sidecar import EXIT_LEASE_LOST

    defaults = Timings()
    run = commands.add_parser(
        "run",
        parents=[verbosity, _connection_options()],
        usage="%(prog)s --lease NAME [options] -- CMD [ARG ...]",
        help="run a command only while leading a Lease (a sidecar or wrapper)",
        description=(
            "Campaign for the Lease and run CMD only while this process leads it. CMD gets "
            "LEADERELECT_TOKEN (the fencing token), LEADERELECT_IDENTITY and LEADERELECT_LEASE. "
            "On losing the lease, CMD's process group gets SIGTERM, then SIGKILL after the "
            "grace period; the lease is released only after CMD has exited. SIGTERM or SIGINT "
            "to this process stops CMD the same way, then releases the lease."
        ),
        epilog=(
            "exit status: CMD's own when it exits by itself (128+N if signal N killed it); "
            f"{EXIT_LEASE_LOST} after losing the lease (without --recampaign); 128+N after "
            "signal N stopped the wrapper (143 for SIGTERM, 130 for SIGINT); 126/127 when CMD "
            "cannot be run or is not found; 1 for a bad kubeconfig; 2 for bad arguments"
        ),
    )
    run.add_argument("--lease", required=True, metavar="NAME", help="the Lease's name")
    run.add_argument(
        "--identity",
        metavar="ID",
        help="holder identity, unique per candidate (default: $POD_NAME, else "
        "<hostname>_<random uuid>)",
    )
    run.add_argument(
        "--lease-duration",
        type=_seconds,
        default=defaults.lease_duration,
        metavar="SECONDS",
        help="how long followers wait for an abandoned lease (default %(default)gs)",
    )
    run.add_argument(
        "--renew-deadline",
        type=_seconds,
        default=defaults.renew_deadline,
        metavar="SECONDS",
        help="how long CMD keeps running without a successful renewal (default %(default)gs)",
    )
    run.add_argument(
        "--retry-period",
        type=_seconds,
        default=defaults.retry_period,
        metavar="SECONDS",
        help="time between renewals and retries (default %(default)gs)",
    )
    run.add_argument(
        "--grace-period",
        type=_seconds_or_zero,
        metavar="SECONDS",
        help="time between SIGTERM and SIGKILL when stopping CMD (default: --lease-duration "
        "minus --renew-deadline, the time no successor can start in)",
    )
    run.add_argument(
        "--recampaign",
        action="store_true",
        help=f"after losing the lease, campaign again instead of exiting {EXIT_LEASE_LOST}",
    )
    run.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="-- CMD [ARG ...]",
        help="the command to run while leading, after --",
    )
    run.set_defaults(handler=_run, command_parser=run)


def _add_status(commands: _Commands, verbosity: argparse.ArgumentParser) -> None:
    status = commands.add_parser(
        "status",
        parents=[verbosity, _connection_options()],
        help="show who holds a Lease, since when, and when it expires",
        description=(
            "Read the Lease once and show its holder, the age of the holder's term, when it "
            "expires (renewTime + leaseDurationSeconds, by the holder's clock), its "
            "transitions and fencing token, and its acquire and renew times."
        ),
        epilog="exit status: 0 when the Lease was read; 1 when it does not exist or cannot "
        "be read; 2 for bad arguments",
    )
    status.add_argument("name", metavar="NAME", help="the Lease's name")
    status.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="output format (default %(default)s)",
    )
    status.set_defaults(handler=_status, command_parser=status)


def _add_watch(commands: _Commands) -> None:
    watch = commands.add_parser(
        "watch",
        parents=[_connection_options()],
        help="follow a Lease: a line per change of holder (-v: and per renewal)",
        description=(
            "Show the Lease's holder, then one line per change of holder or term as a watch "
            "reports it (no polling), until Ctrl-C."
        ),
        epilog="exit status: 130 after Ctrl-C, 143 after SIGTERM; 1 when the Lease cannot "
        "be read; 2 for bad arguments",
    )
    watch.add_argument("name", metavar="NAME", help="the Lease's name")
    watch.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="also show each renewal, and log leaderelect's INFO records to stderr (-vv: DEBUG)",
    )
    watch.set_defaults(handler=_watch, command_parser=watch)


# -- the commands ----------------------------------------------------------------------------


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import anyio

    from ._config import Timings
    from ._demo import DemoSettings, run_demo
    from ._errors import ConfigError

    try:
        settings = DemoSettings(
            candidates=args.candidates,
            timings=Timings(args.lease_duration, args.renew_deadline, args.retry_period),
            hold=args.hold,
            lease=args.lease,
            verbosity=args.verbose,
        )
    except ConfigError as exc:
        parser.error(_option_names(str(exc)))
    report = anyio.run(run_demo, settings, out)
    if report.interrupted:
        return _EXIT_INTERRUPTED
    if not report.ok:
        _err(f"leaderelect demo: error: {report.error or 'a takeover was not measured'}")
        return 1
    return 0


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from functools import partial

    import anyio

    from .testing import LeaseApiServer, serve

    def announce(server: LeaseApiServer) -> None:
        out(f"leaderelect Lease API server listening on {server.url} (Ctrl-C to stop)")
        for user in ("admin", "elector", "reader"):
            out(f"  {user + ' kubeconfig:':<20} {server.kubeconfig(user)}")
        out(f"try: KUBECONFIG={server.kubeconfig('admin')} kubectl get leases -A")

    try:
        anyio.run(partial(serve, host=args.host, port=args.port, on_ready=announce))
    except OSError as exc:
        _err(f"leaderelect serve: error: cannot listen on {args.host} port {args.port}: {exc}")
        return 1
    return 0


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import anyio

    from ._config import Timings
    from ._errors import ConfigError, LeaderElectionError
    from ._sidecar import SidecarSettings, run_sidecar

    usage: argparse.ArgumentParser = args.command_parser
    command: list[str] = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        usage.error("give the command to run after --, e.g. -- python -m http.server")
    try:
        settings = SidecarSettings(
            command=tuple(command),
            target=_target(args, args.lease),
            identity=args.identity,
            timings=Timings(args.lease_duration, args.renew_deadline, args.retry_period),
            grace_period=args.grace_period,
            recampaign=args.recampaign,
        )
    except ConfigError as exc:
        usage.error(_option_names(str(exc)))
    try:
        return anyio.run(run_sidecar, settings, _err)
    except LeaderElectionError as exc:
        _err(f"leaderelect run: error: {exc}")
        return 1


def _status(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from functools import partial

    import anyio

    from ._errors import LeaderElectionError
    from ._inspect import show_status

    target = _target(args, args.name)
    try:
        anyio.run(partial(show_status, target, as_json=args.output == "json", write=out))
    except LeaderElectionError as exc:
        _err(f"leaderelect status: error: {exc}")
        return 1
    return 0


def _watch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from functools import partial

    import anyio

    from ._errors import LeaderElectionError
    from ._inspect import watch_lease

    target = _target(args, args.name)
    try:
        return anyio.run(partial(watch_lease, target, renewals=args.verbose > 0, write=out))
    except LeaderElectionError as exc:
        _err(f"leaderelect watch: error: {exc}")
        return 1


def _target(args: argparse.Namespace, name: str) -> LeaseTarget:
    """The Lease a command names; an invalid name or namespace is a usage error (exit 2)."""
    from ._connect import LeaseTarget
    from ._errors import ConfigError

    try:
        return LeaseTarget(name, args.namespace, args.kubeconfig, args.context)
    except ConfigError as exc:
        usage: argparse.ArgumentParser = args.command_parser
        usage.error(str(exc))


def _option_names(message: str) -> str:
    """Say ``--lease-duration`` where a library message says ``lease_duration``."""
    for name in ("lease_duration", "renew_deadline", "retry_period", "grace_period"):
        message = message.replace(name, "--" + name.replace("_", "-"))
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``leaderelect`` command; returns its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    handler: Callable[[argparse.ArgumentParser, argparse.Namespace], int] = args.handler
    try:
        return handler(parser, args)
    except KeyboardInterrupt:  # before the command's own signal handling is in place
        return _EXIT_INTERRUPTED
