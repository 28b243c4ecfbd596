"""Development sessions: ``nox -s tests lint typecheck docs demo bench``.

The development dependencies are PEP 735 dependency groups in pyproject.toml, which pip reads
from version 25.1 on (``pip install -e . --group test``); each session upgrades its pip first.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True

# The Pythons pyproject.toml claims; CI runs the suite on one and the fast tests on the others.
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
# The fast part of the suite, as .ci/run runs it on the other Pythons.
FAST_TESTS = [
    "tests/unit",
    "tests/testing",
    "tests/integrations",
    "tests/kube",
    "-m",
    "not real_server and not slow",
]


def install(session: nox.Session, *groups: str, constraints: str | None = None) -> None:
    """The project in editable mode with the given dependency groups."""
    session.install("-U", "pip>=25.1")
    args = ["-e", "."]
    for group in groups:
        args += ["--group", group]
    if constraints is not None:
        args += ["-c", constraints]
    session.install(*args)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite; the real-kube-apiserver variants run where ../shared and etcd exist."""
    install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS)
def fast(session: nox.Session) -> None:
    """The fast tests on each Python we claim: ``nox -s fast-3.10``."""
    install(session, "test")
    session.run("pytest", *FAST_TESTS, *session.posargs)


@nox.session(python=PYTHONS[0])
def lowest(session: nox.Session) -> None:
    """The fast tests with the lowest versions our dependency bounds allow, on the oldest Python."""
    install(session, "test", constraints="tests/packaging/lowest-versions.txt")
    session.run("pytest", *FAST_TESTS, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, the tests and the benchmarks."""
    install(session, "lint")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors."""
    install(session, "docs")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def demo(session: nox.Session) -> None:
    """The README's demo: an election among three candidates with two takeovers."""
    session.install("-e", ".")
    session.run("leaderelect", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: handover latency, failover, API load; prints a table and writes JSON."""
    session.install("-e", ".")
    session.run("python", "benchmarks/election.py", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """At least 10,000 randomized fault schedules, the faults of deployments included; prints
    schedules, faults, and findings by kind (overlaps, clobbers, liveness misses...: all 0).

    ``nox -s soak -- 500`` runs 500; ``LEADERELECT_SEED`` fixes the base seed and
    ``LEADERELECT_SOAK_REPORT=<file>`` writes the figures as JSON.
    """
    install(session, "test")
    schedules = session.posargs[0] if session.posargs else "10000"
    session.run(
        "pytest",
        "tests/safety/test_schedules.py::test_soak",
        "-s",
        "-p",
        "no:cacheprovider",
        env={"LEADERELECT_SOAK_SCHEDULES": schedules},
    )
