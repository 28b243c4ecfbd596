"""The ``leaderelect`` command (also ``python -m leaderelect``): the parser, and nothing else.

Each command lives in the module named after it and adds its own parser: ``demo``
(``_demo``, whose candidates are the program ``_candidate``), ``serve`` (``_serve``), ``run``
(``_run``), ``status`` (``_status``) and ``watch`` (``_watch``). The option blocks they share
are in ``_options``, the Lease they name in ``_target``. Output goes through
``_output.out`` (stdout) and, for ``run``'s own lines and every error, ``_output.err``;
logging is configured there and only there (WARNING by default, ``-v`` for INFO, ``-vv``
for DEBUG).

Exit statuses: 0 success; 1 a runtime error (a bad kubeconfig, a missing Lease, a denied
request), one line on stderr; 2 a usage error; 128 + N after signal N (130 for Ctrl-C); ``run``
also exits with its command's status, or 75 after losing the lease.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .. import __version__
from . import _demo, _run, _serve, _status, _watch
from ._options import Handler
from ._output import EXIT_INTERRUPTED, configure_logging

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leaderelect",
        description="Asyncio-native Kubernetes leader election on coordination.k8s.io Leases.",
        epilog="Start with `leaderelect demo`: no cluster needed.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    commands.required = True
    for command in (_demo, _serve, _run, _status, _watch):
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``leaderelect`` command; returns its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    handler: Handler = args.handler
    try:
        return handler(parser, args)
    except KeyboardInterrupt:  # before the command's own signal handling is in place
        return EXIT_INTERRUPTED
