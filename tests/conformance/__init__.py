"""Differential conformance tests: each runs against our LeaseApiServer and a real kube-apiserver.

The expected values are what kube-apiserver v1.36.2 answers (``../shared/reference`` and the
server itself). A test that fails only on ``[embedded]`` is a bug in ``leaderelect.testing``.
"""
