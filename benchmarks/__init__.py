"""Benchmarks of leaderelect's election against its peers (``python benchmarks/election.py``).

``election.py`` is the entry point; ``_candidate.py`` is one candidate process (one or more
electors of one implementation), driven by the orchestrator through its stdin and stdout.
"""
