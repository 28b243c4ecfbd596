"""LeaseLock (``leaderelect._kube``) against real HTTP servers, always through a kubeconfig.

The client is never patched. Three kinds of server answer these tests:

* ``kube`` (``tests/conftest.py``): :class:`leaderelect.testing.LeaseApiServer` and a real
  kube-apiserver, for everything both must answer alike (CRUD, conflicts, 403/404 messages,
  watch events, 410);
* ``scripted`` (``conftest.py`` here): a small aiohttp server whose every answer the test
  writes, for what no well-behaved server sends (non-JSON bodies, split and overlong watch
  lines, stalls);
* ``leaderelect_server`` faults, for latency and errors injected into a working Lease API.

One module per module of ``leaderelect/_kube/``: ``test_lock.py`` (the verbs, construction,
closing), ``test_errors.py`` (the error mapping), ``test_watch.py`` (the watch stream) and
``test_connect.py`` (kubeconfig and in-cluster loading).
"""
