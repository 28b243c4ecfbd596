"""Where the command line writes: its output lines, its own stderr lines, and its log handler.

Every line a command prints goes through :func:`out` (stdout) or :func:`err` (stderr), the one
place the package uses ``print``; logging is configured by :func:`configure_logging` and only
there (WARNING by default, INFO at ``-v``, DEBUG at ``-vv``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Final

__all__ = ["EXIT_INTERRUPTED", "Write", "configure_logging", "err", "out"]

EXIT_INTERRUPTED: Final = 130
"""The status after Ctrl-C (``128 + SIGINT``)."""

Write = Callable[[str], None]
"""Where a command writes its lines: :func:`out`, :func:`err`, or a test's list."""

_LOG_HANDLER = "leaderelect-cli"


def out(text: str = "") -> None:
    """Write one line of the command's output to stdout, at once."""
    print(text, flush=True)


def err(text: str) -> None:
    """Write one line to stderr, at once: errors, and ``run``'s own lines."""
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
