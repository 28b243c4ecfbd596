"""The ``leaderelect`` command (also ``python -m leaderelect``): argument parsing, nothing else.

``demo`` runs :func:`leaderelect._demo.run_demo`; ``serve`` runs the embedded Lease API server
with :func:`leaderelect.testing.serve`. Output goes through :func:`out`; logging is configured here
and only here (WARNING by default, ``-v`` for INFO, ``-vv`` for DEBUG).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence

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
    return parser


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


def _option_names(message: str) -> str:
    """Say ``--lease-duration`` where a library message says ``lease_duration``."""
    for name in ("lease_duration", "renew_deadline", "retry_period"):
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
