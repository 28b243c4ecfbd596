"""Run a :class:`LeaseApiServer` until interrupted (``python -m leaderelect.testing``)."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Callable, Sequence

import anyio

from ._auth import standard_users
from ._server import LeaseApiServer

__all__ = ["build_parser", "serve"]

logger = logging.getLogger(__name__)


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[LeaseApiServer], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, with the ``admin``, ``elector`` and ``reader`` users.

    Args:
        host: the address to listen on.
        port: the port (0 picks a free one).
        on_ready: called once the server listens (e.g. to print the kubeconfig paths).
    """
    async with LeaseApiServer(host=host, port=port, users=standard_users()) as server:
        if on_ready is not None:
            on_ready(server)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                logger.info("stopping", extra={"signal": signal.Signals(signum).name})
                break


def build_parser(prog: str = "python -m leaderelect.testing") -> argparse.ArgumentParser:
    """The command line of the standalone server."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run an in-process Kubernetes Lease API server (users admin, elector, reader).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the standalone server's arguments."""
    return build_parser().parse_args(argv)
