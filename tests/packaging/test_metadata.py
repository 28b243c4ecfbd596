"""The project's metadata says what is true: one version, the license it ships, the Python
versions and frameworks CI tests, lower bounds that CI installs, development dependencies as
dependency groups."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import leaderelect

ROOT = Path(__file__).resolve().parents[2]
LOWEST = Path(__file__).with_name("lowest-versions.txt")
CI_RUN = ROOT / ".ci" / "run"
# The extras a user installs; everything else for development is a dependency group.
USER_EXTRAS = {"testing", "fastapi", "prometheus", "kopf"}


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is new in Python 3.11")
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data


def _requirements(project: dict[str, Any]) -> list[Requirement]:
    """Every direct dependency: the package's, its extras' and the test group's."""
    table = project["project"]
    texts = list(table["dependencies"])
    for extra in table["optional-dependencies"].values():
        texts += extra
    texts += [t for t in project["dependency-groups"]["test"] if isinstance(t, str)]
    return [r for r in map(Requirement, texts) if canonicalize_name(r.name) != "leaderelect"]


def test_the_version_is_written_once(project: dict[str, Any]) -> None:
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    source = project["tool"]["hatch"]["version"]["path"]
    assert source == "leaderelect/__init__.py"
    assignments = [
        node
        for node in ast.parse((ROOT / source).read_text()).body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
    ]
    assert len(assignments) == 1
    Version(leaderelect.__version__)  # a valid version
    assert importlib.metadata.version("leaderelect") == leaderelect.__version__


def test_the_license_file_is_the_license_the_metadata_names(project: dict[str, Any]) -> None:
    assert project["project"]["license"] == "Apache-2.0"
    assert project["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_classifiers_claim_only_what_ci_tests(project: dict[str, Any]) -> None:
    classifiers = project["project"]["classifiers"]
    # aiohttp, under the embedded server and the integrations, runs on asyncio only.
    assert "Framework :: AnyIO" not in classifiers
    claimed = {
        c.rsplit(" :: ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert project["project"]["requires-python"] == f">={min(claimed, key=Version)}"
    if not CI_RUN.is_file():
        pytest.skip(".ci/run is not here (an sdist)")
    ci = CI_RUN.read_text()
    found = re.search(r"^EXTRA_PYTHONS=\"([\d. ]+)\"", ci, re.MULTILINE)
    assert found is not None, "EXTRA_PYTHONS=... in .ci/run"
    # The suite runs on this interpreter; its fast part on each of EXTRA_PYTHONS.
    tested = set(found.group(1).split()) | {f"{sys.version_info[0]}.{sys.version_info[1]}"}
    assert claimed == tested


def test_every_lower_bound_is_pinned_for_the_lowest_versions_job(
    project: dict[str, Any],
) -> None:
    bounds = {}
    for requirement in _requirements(project):
        lower = [s.version for s in requirement.specifier if s.operator == ">="]
        if lower:
            bounds[canonicalize_name(requirement.name)] = Version(lower[0])
    pins = {}
    for line in LOWEST.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    assert pins == bounds


def test_the_kopf_bound_has_login_via_async_client(project: dict[str, Any]) -> None:
    # examples/kopf_operator.py logs in with kopf.login_via_async_client (new in kopf 1.41.0;
    # 1.41.1 is the first that takes our awaitable refresh_api_key_hook).
    (kopf,) = (r for r in _requirements(project) if r.name == "kopf")
    assert "1.40.1" not in kopf.specifier
    assert "1.41.0" not in kopf.specifier
    assert "1.41.1" in kopf.specifier


def test_development_dependencies_are_dependency_groups(project: dict[str, Any]) -> None:
    assert set(project["project"]["optional-dependencies"]) == USER_EXTRAS
    groups = project["dependency-groups"]
    assert {"test", "lint", "docs", "dev"} <= set(groups)
    assert "leaderelect[testing,fastapi,prometheus,kopf]" in groups["test"]
