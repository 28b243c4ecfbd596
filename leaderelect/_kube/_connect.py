"""Where a lock's connection comes from: a kubeconfig file, or the pod's service account.

:func:`connect` picks one with controller-runtime's precedence (an explicit kubeconfig, then
``$KUBECONFIG``, then the pod's service account, then ``~/.kube/config``); :func:`load_kubeconfig`
and :func:`load_in_cluster` load one of them. Each returns a :class:`Connection`: the
kubernetes_asyncio ``Configuration`` that :class:`~leaderelect.LeaseLock` builds its own API
client from, the :class:`~leaderelect._kube._credentials.Credentials` that keep its token fresh
(the loader is kept, not discarded), and the namespace the configuration implies. Files are read
in a worker thread; every failure is a :class:`~leaderelect.ConfigError` naming the setting and
the path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import kubernetes_asyncio.client
import kubernetes_asyncio.config
from kubernetes_asyncio.config.config_exception import ConfigException

from .._errors import ConfigError
from ._credentials import Credentials, KubeconfigSource, ServiceAccountSource

__all__ = ["Connection", "connect", "load_in_cluster", "load_kubeconfig", "pod_namespace"]

logger = logging.getLogger(__name__)

_SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where the kubelet mounts the pod's service account (tests point it elsewhere)."""
_DEFAULT_KUBECONFIG = "~/.kube/config"
_IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"
"""Set by the kubelet in every container: the process runs in a pod."""


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach the API server, as loaded from one source."""

    configuration: kubernetes_asyncio.client.Configuration
    credentials: Credentials
    namespace: str | None
    """The kubeconfig context's namespace; ``None`` when it names none, or in a pod."""
    in_cluster: bool
    """True when this is the pod's service account."""


async def connect(
    kubeconfig: str | os.PathLike[str] | None,
    context: str | None,
    *,
    give: str = "pass kubeconfig=...",
) -> Connection:
    """Load the first configuration that applies, in controller-runtime's order.

    1. ``kubeconfig``, when given;
    2. else ``$KUBECONFIG``, when set (a path list);
    3. else the pod's service account, when ``$KUBERNETES_SERVICE_HOST`` is set and no
       ``context`` is asked for (one that fails to load falls through, as in controller-runtime);
    4. else ``~/.kube/config``.

    Args:
        kubeconfig: an explicit kubeconfig file.
        context: the kubeconfig context to use; ``None`` for the current context.
        give: how the caller's user names an explicit kubeconfig, for messages
            (``"give --kubeconfig"`` on the command line).

    Raises:
        ConfigError: the chosen source cannot be loaded, or none applies; the message
            (prefixed ``kubeconfig:``) says what was tried.
    """
    if kubeconfig is not None or os.environ.get("KUBECONFIG"):
        return await load_kubeconfig(kubeconfig, context, setting="kubeconfig")
    pod_failure: str | None = None
    if context is None and os.environ.get(_IN_CLUSTER_ENV):
        try:
            return await load_in_cluster()
        except ConfigError as exc:
            pod_failure = " ".join(str(exc).removeprefix("in_cluster: ").split())
            logger.debug("the pod's service account cannot be used: %s", pod_failure)
    if await anyio.to_thread.run_sync(_existing_files, _DEFAULT_KUBECONFIG):
        try:
            return await load_kubeconfig(_DEFAULT_KUBECONFIG, context, setting="kubeconfig")
        except ConfigError as exc:
            if pod_failure is None:
                raise
            raise ConfigError(
                f"{exc} (the pod's service account could not be used either: {pod_failure})"
            ) from exc
    if pod_failure is not None:
        raise ConfigError(
            f"kubeconfig: {pod_failure} (${_IN_CLUSTER_ENV} is set, so the pod's service "
            f"account was tried, and there is no {_DEFAULT_KUBECONFIG}; {give} or set "
            "$KUBECONFIG to use a kubeconfig instead)"
        )
    in_pod = "" if context is None else f" (context {context!r} asks for one)"
    raise ConfigError(
        f"kubeconfig: no kubeconfig found at {_DEFAULT_KUBECONFIG!r}{in_pod} "
        f"({give}, set $KUBECONFIG, or run in a pod)"
    )


async def load_kubeconfig(
    config_file: str | os.PathLike[str] | None,
    context: str | None,
    *,
    setting: str = "config_file",
) -> Connection:
    """Load a kubeconfig, keeping its loader to refresh the credentials.

    Args:
        config_file: the kubeconfig; ``None`` for ``$KUBECONFIG`` (a path list), else
            ``~/.kube/config``.
        context: the context to use; ``None`` for the current context.
        setting: the name messages give the file's setting.

    Raises:
        ConfigError: no kubeconfig exists there, or it cannot be loaded.
    """
    if config_file is not None:
        path = os.fspath(config_file)
    else:
        path = os.environ.get("KUBECONFIG") or _DEFAULT_KUBECONFIG
    existing = await anyio.to_thread.run_sync(_existing_files, path)
    if not existing:
        raise ConfigError(f"{setting}: no kubeconfig found at {path!r}")
    configuration = kubernetes_asyncio.client.Configuration()
    try:
        loader = await kubernetes_asyncio.config.load_kube_config(
            config_file=os.pathsep.join(existing),
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
        source = KubeconfigSource(loader)
    except Exception as exc:  # anything the loader throws means the file is unusable
        which = f"context {context!r} of " if context is not None else ""
        raise ConfigError(
            f"{setting}: cannot load {which}kubeconfig {path!r}: {type(exc).__name__}: {exc}"
        ) from exc
    token, expiry = source.current()
    credentials = Credentials(configuration, source, token=token, expiry=expiry)
    return Connection(
        configuration, credentials, _context_namespace(loader.current_context), in_cluster=False
    )


async def load_in_cluster() -> Connection:
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
                try_refresh_token=False,  # our Credentials read the token file again
                token_filename=str(account / "token"),
                cert_filename=str(account / "ca.crt"),
            )
        )
    except (ConfigException, OSError) as exc:
        raise ConfigError(
            f"in_cluster: cannot load the service-account config from {str(account)!r}: {exc}"
        ) from exc
    token = configuration.api_key.get("BearerToken")
    credentials = Credentials(
        configuration,
        ServiceAccountSource(account / "token"),
        token=token if isinstance(token, str) else None,
        expiry=None,
    )
    return Connection(configuration, credentials, None, in_cluster=True)


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
