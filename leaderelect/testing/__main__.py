"""``python -m leaderelect.testing --port N [--host H]``: serve and print kubeconfig paths."""

from __future__ import annotations

import sys

import anyio

from ._serve import parse_args, serve
from ._server import LeaseApiServer


def _announce(server: LeaseApiServer) -> None:
    print(f"serving {server.url}", flush=True)
    for user in ("admin", "elector", "reader"):
        print(f"{user} kubeconfig: {server.kubeconfig(user)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the server until Ctrl-C or SIGTERM."""
    args = parse_args(argv)
    anyio.run(lambda: serve(host=args.host, port=args.port, on_ready=_announce))
    return 0


if __name__ == "__main__":
    sys.exit(main())
