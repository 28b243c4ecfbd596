"""The sdist carries what the tests and the docs build need; both distributions carry the
license; the wheel's metadata says one version, the one in ``leaderelect/__init__.py``.

Builds both with ``python -m build`` (the sdist, then the wheel from it), or reads those that
``.ci/run`` built, named by ``LEADERELECT_DIST_DIR``.
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import leaderelect

ROOT = Path(__file__).resolve().parents[2]
# What the tests and the docs build read, besides the package.
SDIST_TOPLEVEL = {
    "LICENSE",
    "README.md",
    "CHANGELOG.md",
    "pyproject.toml",
    "mkdocs.yml",
    "noxfile.py",
    "leaderelect",
    "tests",
    "docs",
    "examples",
    "benchmarks",
}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel."""
    given = os.environ.get("LEADERELECT_DIST_DIR")
    if given:
        out = Path(given)
    else:
        pytest.importorskip("build", reason="python -m build (the dev dependency group)")
        out = tmp_path_factory.mktemp("dist")
        subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
            check=True,
            capture_output=True,
            timeout=280,
        )
    (sdist,) = out.glob("leaderelect-*.tar.gz")
    (wheel,) = out.glob("leaderelect-*.whl")
    return sdist, wheel


def _sdist_files(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def _tracked(*paths: str) -> set[str]:
    """Files git tracks under ``paths`` (all files there outside a git checkout)."""
    if (ROOT / ".git").exists():
        listing = subprocess.run(
            ["git", "ls-files", "--", *paths],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        return {name for name in listing.splitlines() if (ROOT / name).is_file()}
    return {
        str(p.relative_to(ROOT))
        for path in paths
        for p in (ROOT / path).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_the_sdist_carries_the_tests_docs_examples_and_benchmarks(
    dists: tuple[Path, Path],
) -> None:
    sdist, _ = dists
    files = _sdist_files(sdist)
    assert {name.split("/")[0] for name in files} >= SDIST_TOPLEVEL
    missing = _tracked("tests", "docs", "examples", "benchmarks", "leaderelect") - files
    assert not missing, f"tracked files missing from {sdist.name}: {sorted(missing)}"
    assert not [name for name in files if "__pycache__" in name or name.startswith(".ci/")]


def test_both_distributions_carry_the_license(dists: tuple[Path, Path]) -> None:
    sdist, wheel = dists
    license_text = (ROOT / "LICENSE").read_bytes()
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(f"{sdist.name.removesuffix('.tar.gz')}/LICENSE")
        assert member is not None and member.read() == license_text
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(name) == license_text


def test_the_wheel_metadata(dists: tuple[Path, Path]) -> None:
    _, wheel = dists
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
        entry_points = archive.read(metadata_name.replace("METADATA", "entry_points.txt"))
    assert metadata["Version"] == leaderelect.__version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert "Framework :: AnyIO" not in metadata.get_all("Classifier", [])
    assert "kopf>=1.41.1; extra == 'kopf'" in metadata.get_all("Requires-Dist", [])
    # The plugin and its pytest-asyncio half, and the marker that says the package is typed.
    for module in ("pytest_plugin.py", "_pytest_asyncio_fixtures.py"):
        assert f"leaderelect/testing/{module}" in names
    assert "leaderelect/py.typed" in names
    assert b"leaderelect = leaderelect.testing.pytest_plugin" in entry_points
    # The development dependency groups are not the package's extras.
    assert set(metadata.get_all("Provides-Extra", [])) == {
        "testing",
        "fastapi",
        "prometheus",
        "kopf",
    }
