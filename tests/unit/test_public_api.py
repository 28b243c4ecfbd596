"""The public surface is what each public module's ``__all__`` says, documented, and nothing
private leaks through it; the package's modules import each other without circles."""

from __future__ import annotations

import ast
import importlib
import inspect
import types
from pathlib import Path

import pytest

import leaderelect

PACKAGE = Path(leaderelect.__file__).parent
DOCS = PACKAGE.parent / "docs"
# The API reference, and the page that documents the exceptions.
REFERENCE_PAGES = ("reference.md", "errors.md")

# Every module a user may import. Each must have ``__all__``; a module behind an optional extra
# is checked only where the extra is installed.
PUBLIC_MODULES = {
    "leaderelect": None,
    "leaderelect.metrics": None,
    "leaderelect.testing": None,
    "leaderelect.testing.pytest_plugin": None,
    "leaderelect.integrations": None,
    "leaderelect.integrations.fastapi": "fastapi",
    "leaderelect.integrations.aiohttp": None,
    "leaderelect.integrations.kopf": "kopf",
}


def _public_module(name: str) -> object:
    extra = PUBLIC_MODULES[name]
    if extra is not None:
        pytest.importorskip(extra)
    return importlib.import_module(name)


@pytest.mark.parametrize("name", sorted(PUBLIC_MODULES))
def test_every_public_name_is_exported_and_says_where_it_lives(name: str) -> None:
    module = _public_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert not [n for n in exported if n.startswith("_") and n != "__version__"]
    for attribute in exported:
        obj = getattr(module, attribute)
        if isinstance(obj, types.GenericAlias):
            continue  # a type alias such as Worker (Python 3.10 takes it for a class)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            # Reprs, tracebacks and the docs name the public module, not a private one.
            assert obj.__module__ == name, f"{name}.{attribute} claims {obj.__module__}"


@pytest.mark.parametrize("name", ["leaderelect", "leaderelect.testing"])
def test_the_reference_documents_every_public_name(name: str) -> None:
    reference = "\n".join((DOCS / page).read_text() for page in REFERENCE_PAGES)
    module = _public_module(name)
    missing = [
        attribute
        for attribute in module.__all__  # type: ignore[attr-defined]
        if attribute != "__version__"
        and f"{name}.{attribute}" not in reference
        and f"[`{attribute}`]" not in reference
    ]
    assert not missing, f"the reference pages do not mention {missing}"


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The leaderelect modules ``module`` imports when it is loaded (not for type checking)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                for alias in node.names:
                    # `from . import x` may name a submodule, or an attribute of the package.
                    submodule = f"{target}.{alias.name}"
                    found.add(submodule if submodule in modules else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(getattr(node, "finalbody", []))

    visit(tree.body)
    return {name for name in found if name.startswith("leaderelect")}


def test_no_module_imports_itself_back_in_a_circle() -> None:
    modules: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {
        name: {t for t in _imports(path, name, set(modules)) if t in modules and t != name}
        for name, path in modules.items()
    }
    # A package importing its own submodules (its facade) is not a circle; a submodule
    # importing back into its package's facade, or two modules importing each other, is.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not t.startswith(name + ".")}

    done: set[str] = set()

    def cycle_from(start: str, path: list[str]) -> list[str] | None:
        for target in sorted(graph[start]):
            if target in path:
                return [*path[path.index(target) :], target]
            if target in done:
                continue
            found = cycle_from(target, [*path, target])
            if found:
                return found
        done.add(start)
        return None

    for name in sorted(graph):
        cycle = cycle_from(name, [name])
        assert cycle is None, "import circle: " + " -> ".join(cycle)
