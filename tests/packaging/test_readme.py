"""The README's set-up works on a fresh machine, its install instructions do not send anyone to
an index that does not serve leaderelect, and its snippets use names that exist."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# The pages that tell how to install leaderelect.
INSTALL_PAGES = [
    "README.md",
    "docs/index.md",
    "docs/quickstart.md",
    "docs/testing.md",
    "docs/howto-fastapi.md",
    "docs/howto-kopf.md",
    "docs/howto-metrics.md",
    "examples/fastapi_app.py",
    "examples/kopf_operator.py",
    "examples/testing_example.py",
    "examples/deploy/README.md",
]
# ``pip install leaderelect`` or ``pip install 'leaderelect[extra]'``: from an index.
FROM_AN_INDEX = re.compile(r"pip install (['\"]?)leaderelect(\[[\w,]*\])?\1(?=[\s`]|$)(?!\s*@)")


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def test_the_two_commands() -> None:
    # One runs the demo, one the tests; the second upgrades pip, which reads dependency groups
    # from 25.1 on (a fresh machine may have an older one).
    assert "pip install -e . && leaderelect demo" in README
    assert "pip install -U pip && pip install -e . --group test && pytest" in README


@pytest.mark.parametrize("page", INSTALL_PAGES)
def test_no_install_command_assumes_an_index(page: str) -> None:
    text = (ROOT / page).read_text()
    assert not FROM_AN_INDEX.search(text), FROM_AN_INDEX.search(text)
    assert "pip install -e '.[test]'" not in text and "'.[dev]'" not in text


def test_the_snippets_parse_and_import_what_exists() -> None:
    blocks = _python_blocks(README)
    assert len(blocks) >= 4  # the election, FastAPI, aiohttp, kopf
    for block in blocks:
        tree = compile(
            block, "README.md", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("leaderelect"):
                module_name = node.module or ""
                if module_name.endswith((".fastapi", ".kopf")):
                    pytest.importorskip(module_name.rsplit(".", 1)[1])
                module = importlib.import_module(module_name)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{module_name}.{alias.name}"


def test_the_readme_shows_each_integration_and_links_its_how_to() -> None:
    for how_to in ("howto-fastapi.md", "howto-aiohttp.md", "howto-kopf.md", "howto-sidecar.md"):
        assert f"(docs/{how_to})" in README
        assert (ROOT / "docs" / how_to).is_file()
    assert "leaderelect run --lease" in README
    for module in ("fastapi", "aiohttp", "kopf"):
        assert f"from leaderelect.integrations.{module} import" in README
