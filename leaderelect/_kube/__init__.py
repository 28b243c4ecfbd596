"""The kubernetes_asyncio implementation of the Lease seam (:mod:`leaderelect._lease_client`).

``_lock.py`` holds :class:`LeaseLock` and its four verbs; ``_errors.py`` turns every
kubernetes_asyncio, aiohttp and HTTP failure into the :mod:`leaderelect._errors` tree;
``_watch.py`` reads the NDJSON watch stream; ``_snapshot.py`` reads a Lease into a
``LeaseSnapshot``; ``_connect.py`` loads kubeconfig files and the pod's service account;
``_names.py`` checks Lease and namespace names.
"""

from __future__ import annotations

from ._lock import LeaseLock as LeaseLock

__all__ = ["LeaseLock"]
