"""Where a lock's connection comes from: a kubeconfig file, or the pod's service account.

Each loader returns the kubernetes_asyncio ``Configuration`` that
:meth:`LeaseLock.from_kubeconfig <leaderelect.LeaseLock.from_kubeconfig>` and
:meth:`LeaseLock.in_cluster <leaderelect.LeaseLock.in_cluster>` build their own API client
from, and says which namespace the configuration implies. Files are read in a worker thread;
every failure is a :class:`~leaderelect.ConfigError` naming the setting and the path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import anyio
import kubernetes_asyncio.client
import kubernetes_asyncio.config
from kubernetes_asyncio.config.config_exception import ConfigException

from .._errors import ConfigError

__all__ = ["load_in_cluster", "load_kubeconfig", "pod_namespace"]

_SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_DEFAULT_KUBECONFIG = "~/.kube/config"


async def load_kubeconfig(
    config_file: str | os.PathLike[str] | None, context: str | None
) -> tuple[kubernetes_asyncio.client.Configuration, str | None]:
    """Load a kubeconfig.

    Args:
        config_file: the kubeconfig; ``None`` for ``$KUBECONFIG`` (a path list), else
            ``~/.kube/config``.
        context: the context to use; ``None`` for the current context.

    Returns:
        The client configuration, and the context's namespace (``None`` when it names none).

    Raises:
        ConfigError: no kubeconfig exists there, or it cannot be loaded.
    """
    if config_file is not None:
        path = os.fspath(config_file)
    else:
        path = os.environ.get("KUBECONFIG") or _DEFAULT_KUBECONFIG
    existing = await anyio.to_thread.run_sync(_existing_files, path)
    if not existing:
        raise ConfigError(f"config_file: no kubeconfig found at {path!r}")
    configuration = kubernetes_asyncio.client.Configuration()
    try:
        loader = await kubernetes_asyncio.config.load_kube_config(
            config_file=os.pathsep.join(existing),
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except Exception as exc:  # anything the loader throws means the file is unusable
        which = f"context {context!r} of " if context is not None else ""
        raise ConfigError(
            f"config_file: cannot load {which}kubeconfig {path!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return configuration, _context_namespace(loader.current_context)


async def load_in_cluster() -> kubernetes_asyncio.client.Configuration:
    """Load the pod's service-account token and CA, and the API server's address.

    Raises:
        ConfigError: the process is not running in a pod (or its service account is unreadable).
    """
    account = _SERVICE_ACCOUNT_DIR
    configuration = kubernetes_asyncio.client.Configuration()
    try:
        await anyio.to_thread.run_sync(
            lambda: kubernetes_asyncio.config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration,
                token_filename=str(account / "token"),
                cert_filename=str(account / "ca.crt"),
            )
        )
    except (ConfigException, OSError) as exc:
        raise ConfigError(
            f"in_cluster: cannot load the service-account config from {str(account)!r}: {exc}"
        ) from exc
    return configuration


async def pod_namespace() -> str:
    """The pod's own namespace, from its service account (not yet validated).

    Raises:
        ConfigError: the namespace file cannot be read.
    """
    namespace_file = anyio.Path(_SERVICE_ACCOUNT_DIR / "namespace")
    try:
        return (await namespace_file.read_text()).strip()
    except OSError as exc:
        raise ConfigError(
            f"namespace: not given, and {str(namespace_file)!r} cannot be read: {exc}"
        ) from exc


def _existing_files(paths: str) -> list[str]:
    """The files of a ``KUBECONFIG``-style path list that exist."""
    return [p for p in paths.split(os.pathsep) if p and os.path.exists(os.path.expanduser(p))]


def _context_namespace(context: object) -> str | None:
    if not isinstance(context, Mapping):
        return None
    body = context.get("context")
    if not isinstance(body, Mapping):
        return None
    namespace = body.get("namespace")
    return namespace if isinstance(namespace, str) and namespace else None
