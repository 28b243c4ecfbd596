"""How the command line reaches the API server: :meth:`LeaseLock.connect
<leaderelect.LeaseLock.connect>`, in kubectl's and controller-runtime's order of preference.

1. ``--kubeconfig PATH`` (and ``--context``), when given;
2. else ``$KUBECONFIG``, when set;
3. else the pod's service account, when running in a pod (``$KUBERNETES_SERVICE_HOST`` is set);
4. else ``~/.kube/config``.

``run``, ``status`` and ``watch`` all open their :class:`~leaderelect.LeaseLock` here; ``watch``
and the demo follow it with :func:`follow_lease`, the library's own watch loop.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from .. import ConfigError, LeaseLock, LoopClock, Timings
from .._follow import follow
from .._kube._names import validate_name, validate_namespace
from .._lease_client import LeaseSnapshot
from .._view import LeaseView

__all__ = ["LeaseSnapshot", "LeaseTarget", "follow_lease", "open_lock"]

_IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"
"""Set by the kubelet in every container: the process runs in a pod."""


@dataclass(frozen=True, slots=True)
class LeaseTarget:
    """Which Lease a command works on, and how to reach its API server.

    Raises:
        ConfigError: ``name`` or ``namespace`` is not a valid Kubernetes name.
    """

    name: str
    """The Lease's name."""
    namespace: str | None = None
    """The Lease's namespace; by default the kubeconfig context's, or the pod's own."""
    kubeconfig: Path | None = None
    """An explicit kubeconfig file."""
    context: str | None = None
    """A kubeconfig context other than the current one."""

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.namespace is not None:
            validate_namespace(self.namespace)

    @property
    def in_cluster(self) -> bool:
        """True when the pod's service account will be tried (see the module docstring)."""
        return (
            self.kubeconfig is None
            and self.context is None
            and not os.environ.get("KUBECONFIG")
            and bool(os.environ.get(_IN_CLUSTER_ENV))
        )


async def open_lock(target: LeaseTarget) -> LeaseLock:
    """A lock on ``target`` that owns its API client (close it with ``async with``):
    :meth:`LeaseLock.connect <leaderelect.LeaseLock.connect>`, in the command line's terms.

    Raises:
        ConfigError: the kubeconfig or the service account cannot be loaded; the message
            says which file, in the command line's terms (``--kubeconfig``), on one line.
    """
    try:
        return await LeaseLock._connect(
            target.name,
            target.namespace,
            kubeconfig=target.kubeconfig,
            context=target.context,
            give="give --kubeconfig",
        )
    except ConfigError as exc:
        # One line: a YAML parser's message spans several.
        raise ConfigError(" ".join(str(exc).removeprefix("kubeconfig: ").split())) from exc


async def follow_lease(
    lock: LeaseLock,
    on_change: Callable[[LeaseSnapshot | None], None],
    *,
    timings: Timings,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_change`` with each new version of the Lease (``None`` while it does not
    exist), until cancelled: one GET, then a watch resumed from the last resourceVersion.

    Reports started after the first successful read; failures are retried, never raised.
    """
    clock = LoopClock()
    view = LeaseView()
    view.add_listener(on_change)
    await follow(
        lock, view, timings=timings, clock=clock, rng=random.Random(), task_status=task_status
    )
