"""The kube-apiserver emulation behind :class:`~leaderelect.testing.LeaseApiServer` (private).

It answers the ``coordination.k8s.io/v1`` Lease API (and the namespaces, discovery, OpenAPI,
version and health paths a client touches) as kube-apiserver v1.36.2 does: the same bodies,
errors and their order, resourceVersions, watch streams and watch cache, and Go's JSON and time
formats. Nothing here is public; tests reach it only through ``LeaseApiServer``.

- :mod:`.http`: a request's path parsed into a ``RequestInfo``, routed, and the answer rendered;
- :mod:`.leases`, :mod:`.lease_reads`, :mod:`.watch`, :mod:`.namespaces`: the endpoints;
- :mod:`.calls`: what the endpoints share (the parsed call, the reply, content negotiation);
- :mod:`.store`: the stored objects, the resourceVersion, the watch cache and the watchers;
- :mod:`.validation`, :mod:`.schema`, :mod:`.patch`, :mod:`.fieldmanager`, :mod:`.selectors`:
  decoding, validating, patching, managedFields and label/field selectors;
- :mod:`.status`: the ``Status`` errors; :mod:`.discovery`: discovery, OpenAPI, tables;
- :mod:`.gojson`, :mod:`.gotime`: Go's ``encoding/json`` and ``time`` formats;
- :mod:`.kubeconfig`: the kubeconfig files pointing at the server, and the token they carry.
"""
