"""Asyncio-native Kubernetes leader election on ``coordination.k8s.io/v1`` Leases.

```python
from leaderelect import LeaderElector, LeaseLock

lock = LeaseLock(api_client, name="my-lease", namespace="default")
elector = LeaderElector(lock, identity="pod-a")
async with elector.leading() as leadership:   # waits until this candidate holds the lease
    await do_the_work(leadership)              # cancelled the moment leadership can't be guaranteed
```
"""

from __future__ import annotations

from ._clock import Clock as Clock
from ._clock import LoopClock as LoopClock
from ._config import Timings as Timings
from ._elector import LeaderElector as LeaderElector
from ._errors import ApiUnavailable as ApiUnavailable
from ._errors import ConfigError as ConfigError
from ._errors import LeaderElectionError as LeaderElectionError
from ._errors import LeaseConflict as LeaseConflict
from ._errors import LeaseError as LeaseError
from ._errors import LeaseForbidden as LeaseForbidden
from ._errors import LeaseInvalid as LeaseInvalid
from ._errors import LeaseNotFound as LeaseNotFound
from ._errors import LossReason as LossReason
from ._errors import WatchExpired as WatchExpired
from ._identity import default_identity as default_identity
from ._kube import LeaseLock as LeaseLock
from ._record import LeaseRecord as LeaseRecord
from ._term import FencingToken as FencingToken
from ._term import Leadership as Leadership
from ._term import LeadershipLost as LeadershipLost

__version__ = "0.1.0.dev0"

__all__ = (
    "ApiUnavailable",
    "Clock",
    "ConfigError",
    "FencingToken",
    "LeaderElectionError",
    "LeaderElector",
    "Leadership",
    "LeadershipLost",
    "LeaseConflict",
    "LeaseError",
    "LeaseForbidden",
    "LeaseInvalid",
    "LeaseLock",
    "LeaseNotFound",
    "LeaseRecord",
    "LossReason",
    "LoopClock",
    "Timings",
    "WatchExpired",
    "__version__",
    "default_identity",
)

# Public objects say they come from ``leaderelect``, in reprs, tracebacks and the docs.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("leaderelect._"):
        _obj.__module__ = __name__
del _name, _obj
