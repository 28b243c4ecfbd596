"""The option blocks several commands share, each defined once, and their argument types.

Each argument type raises ``ArgumentTypeError``, which argparse turns into a usage error (exit
status 2) naming the option.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .. import ConfigError, Timings
from ._target import LeaseTarget

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]
    """What ``add_subparsers()`` returns: where each command adds its parser."""

__all__ = [
    "Handler",
    "add_timings",
    "connection_options",
    "lease_target",
    "seconds",
    "seconds_or_zero",
    "timings_of",
    "usage_error",
    "verbosity_options",
]

Handler = Callable[[argparse.ArgumentParser, argparse.Namespace], int]
"""A command: the ``leaderelect`` parser and the parsed arguments in, its exit status out."""


# -- argument types --------------------------------------------------------------------------


def seconds(text: str) -> float:
    """A number of seconds greater than 0."""
    value = _number_of_seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def seconds_or_zero(text: str) -> float:
    """A number of seconds, 0 or more."""
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


# -- option blocks ---------------------------------------------------------------------------


def verbosity_options() -> argparse.ArgumentParser:
    """``-v``/``--verbose``, as a parent parser."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log leaderelect's INFO records to stderr (-vv: DEBUG)",
    )
    return options


def connection_options() -> argparse.ArgumentParser:
    """``--namespace``, ``--kubeconfig`` and ``--context``, as a parent parser."""
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


def add_timings(
    parser: argparse.ArgumentParser, defaults: Timings, *, renew_deadline_help: str
) -> None:
    """``--lease-duration``, ``--renew-deadline`` and ``--retry-period``; read them back with
    :func:`timings_of`. ``renew_deadline_help`` says what stops when the deadline passes."""
    helps = {
        "lease_duration": "how long followers wait for an abandoned lease",
        "renew_deadline": renew_deadline_help,
        "retry_period": "time between renewals and retries",
    }
    for name, text in helps.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=seconds,
            default=getattr(defaults, name),
            metavar="SECONDS",
            help=text + " (default %(default)gs)",
        )


def timings_of(args: argparse.Namespace) -> Timings:
    """The timings :func:`add_timings` parsed.

    Raises:
        ConfigError: the three do not fit together (see :class:`~leaderelect.Timings`).
    """
    return Timings(
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
    )


# -- turning library refusals into usage errors ----------------------------------------------


def usage_error(parser: argparse.ArgumentParser, exc: ConfigError) -> NoReturn:
    """Exit 2 with the refusal, saying ``--lease-duration`` where it says ``lease_duration``."""
    message = str(exc)
    for name in ("lease_duration", "renew_deadline", "retry_period", "grace_period"):
        message = message.replace(name, "--" + name.replace("_", "-"))
    parser.error(message)


def lease_target(
    parser: argparse.ArgumentParser, args: argparse.Namespace, name: str
) -> LeaseTarget:
    """The Lease a command names, with :func:`connection_options`; an invalid name or
    namespace is a usage error (exit 2)."""
    try:
        return LeaseTarget(name, args.namespace, args.kubeconfig, args.context)
    except ConfigError as exc:
        parser.error(str(exc))
