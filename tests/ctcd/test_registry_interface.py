"""Callers take from `ctcd.registry` only the Registry and its own interface (`ctcd.registry.__all__`);
every other name comes from the module that defines it (ctcd.audit, ctcd.model_ref, ctcd.tracking, ...)."""

from __future__ import annotations

import ast
from pathlib import Path

from ctcd import registry

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("ctcd", "tasks", "flows", "tests", "benchmarks", "scripts")


def names_taken_from_registry(source: str) -> list[tuple[int, str]]:
    """(line, name) of each name the source takes from ctcd.registry: imported from it, or read as an
    attribute of the module (`from ctcd import registry [as reg]`, `import ctcd.registry as reg`)."""
    tree = ast.parse(source)
    modules: set[str] = set()
    taken: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "ctcd":
            modules |= {a.asname or a.name for a in node.names if a.name == "registry"}
        elif isinstance(node, ast.ImportFrom) and node.module == "ctcd.registry":
            taken += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.name == "ctcd.registry" and a.asname}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            taken.append((node.lineno, node.attr))
    return sorted(taken)


def test_the_scan_sees_names_taken_through_the_module_and_by_import() -> None:
    probe = (
        "from ctcd import registry\n"
        "from ctcd.registry import ModelRef, tracking_uri\n"
        "def f(ws):\n"
        "    from ctcd import registry as reg\n"
        "    return registry.alias_history(ws), reg.Registry, reg.CHAMPION\n"
    )
    taken = names_taken_from_registry(probe)
    assert taken == [
        (2, "ModelRef"),
        (2, "tracking_uri"),
        (5, "CHAMPION"),
        (5, "Registry"),
        (5, "alias_history"),
    ]
    assert [name for _, name in taken if name not in registry.__all__] == ["tracking_uri", "alias_history"]


def test_callers_take_only_the_registry_interface_from_ctcd_registry() -> None:
    outside = []
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "ctcd" / "registry.py":
                continue
            for line, name in names_taken_from_registry(path.read_text(encoding="utf-8")):
                if name not in registry.__all__ and not name.startswith("__"):
                    outside.append(f"{path.relative_to(REPO)}:{line} registry.{name}")
    assert outside == [], "import these from the module that defines them:\n" + "\n".join(outside)


def test_the_interface_names_are_the_registrys_own() -> None:
    for name in registry.__all__:
        assert hasattr(registry, name), name
