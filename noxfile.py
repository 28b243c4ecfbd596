"""Development sessions: ``nox -s tests lint typecheck docs demo bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite; the real-kube-apiserver variants run where ../shared and etcd exist."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, the tests and the benchmarks."""
    session.install("-e", ".[lint,test]")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors."""
    session.install("-e", ".[docs]")
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
    """At least 10,000 randomized fault schedules; prints schedules, faults, overlaps (0)."""
    session.install("-e", ".[test]")
    schedules = session.posargs[0] if session.posargs else "10000"
    session.run(
        "pytest",
        "tests/safety/test_schedules.py::test_soak",
        "-s",
        "-p",
        "no:cacheprovider",
        env={"LEADERELECT_SOAK_SCHEDULES": schedules},
    )
