"""An in-process Kubernetes Lease API server for tests, answering as kube-apiserver v1.36.2.

```python
from leaderelect.testing import LeaseApiServer, ErrorResponse, standard_users

async with LeaseApiServer(users=standard_users()) as server:
    kubeconfig = server.kubeconfig("elector")          # a real kubeconfig file (plain HTTP)
    with server.faults.add(ErrorResponse(status=500, verb="update", times=1)):
        ...                                            # the next update fails once
    assert server.requests.count(verb="update", user="elector") == 1
```

``leaderelect.testing.pytest_plugin`` (registered as a ``pytest11`` entry point) provides the
``leaderelect_server`` and ``leaderelect_kubeconfig`` fixtures. The kube-apiserver emulation
behind the server is the private ``leaderelect.testing._apiserver``.
"""

from __future__ import annotations

from ._auth import ANONYMOUS as ANONYMOUS
from ._auth import VERBS as VERBS
from ._auth import Rule as Rule
from ._auth import User as User
from ._auth import admin_user as admin_user
from ._auth import standard_users as standard_users
from ._checker import ElectionReport as ElectionReport
from ._checker import ElectionViolation as ElectionViolation
from ._checker import LeadershipLog as LeadershipLog
from ._checker import WorkInterval as WorkInterval
from ._checker import check_election as check_election
from ._checker import check_lease_history as check_lease_history
from ._checker import check_liveness as check_liveness
from ._checker import check_safety as check_safety
from ._checker import liveness_bound as liveness_bound
from ._faults import DropConnection as DropConnection
from ._faults import ErrorResponse as ErrorResponse
from ._faults import ExpireWatch as ExpireWatch
from ._faults import Fault as Fault
from ._faults import Hang as Hang
from ._faults import Latency as Latency
from ._faults import RawResponse as RawResponse
from ._faults import StallWatch as StallWatch
from ._faults import deny_writes as deny_writes
from ._faults import partition as partition
from ._injector import FaultHandle as FaultHandle
from ._injector import FaultInjector as FaultInjector
from ._requests import RequestCounter as RequestCounter
from ._requests import RequestInfo as RequestInfo
from ._requests import WriteRecord as WriteRecord
from ._serve import serve as serve
from ._server import DEFAULT_NAMESPACES as DEFAULT_NAMESPACES
from ._server import LeaseApiServer as LeaseApiServer

__all__ = (
    "ANONYMOUS",
    "DEFAULT_NAMESPACES",
    "VERBS",
    "DropConnection",
    "ElectionReport",
    "ElectionViolation",
    "ErrorResponse",
    "ExpireWatch",
    "Fault",
    "FaultHandle",
    "FaultInjector",
    "Hang",
    "Latency",
    "LeadershipLog",
    "LeaseApiServer",
    "RawResponse",
    "RequestCounter",
    "RequestInfo",
    "Rule",
    "StallWatch",
    "User",
    "WorkInterval",
    "WriteRecord",
    "admin_user",
    "check_election",
    "check_lease_history",
    "check_liveness",
    "check_safety",
    "deny_writes",
    "liveness_bound",
    "partition",
    "serve",
    "standard_users",
)

# Public objects say they come from ``leaderelect.testing``, in reprs, tracebacks and the docs.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(f"{__name__}._"):
        _obj.__module__ = __name__
del _name, _obj
