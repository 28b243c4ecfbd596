"""The public surface is what __all__ says, and nothing private leaks through it."""

from __future__ import annotations

import leaderelect


def test_every_public_name_is_exported_and_says_it_is_from_the_package() -> None:
    for name in leaderelect.__all__:
        obj = getattr(leaderelect, name)
        module = getattr(obj, "__module__", None)
        if module is not None and isinstance(obj, type):
            assert module == "leaderelect", f"{name} claims to come from {module}"


def test_no_private_names_are_exported() -> None:
    assert not [n for n in leaderelect.__all__ if n.startswith("_") and n != "__version__"]
