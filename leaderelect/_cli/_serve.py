"""``leaderelect serve``: the embedded Lease API server, for local development."""

from __future__ import annotations

import argparse
from functools import partial
from typing import TYPE_CHECKING

import anyio

from ._options import verbosity_options
from ._output import err, out

if TYPE_CHECKING:
    from ..testing import LeaseApiServer
    from ._options import Commands

__all__ = ["add_parser"]


def add_parser(commands: Commands) -> None:
    """Add ``leaderelect serve``."""
    serve = commands.add_parser(
        "serve",
        parents=[verbosity_options()],
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
    serve.set_defaults(handler=_main)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from ..testing import serve  # the server's own dependencies load only for this command

    def announce(server: LeaseApiServer) -> None:
        out(f"leaderelect Lease API server listening on {server.url} (Ctrl-C to stop)")
        for user in ("admin", "elector", "reader"):
            out(f"  {user + ' kubeconfig:':<20} {server.kubeconfig(user)}")
        out(f"try: KUBECONFIG={server.kubeconfig('admin')} kubectl get leases -A")

    try:
        anyio.run(partial(serve, host=args.host, port=args.port, on_ready=announce))
    except OSError as exc:
        err(f"leaderelect serve: error: cannot listen on {args.host} port {args.port}: {exc}")
        return 1
    return 0
