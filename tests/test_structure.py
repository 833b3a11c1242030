"""The tree reads as the pipeline: stage packages that say what they own and what they may import, data flowing one
way between them, no import circles and no reaching into another module's private names.

Every import counts, the ones inside functions too: a lazy import is still a dependency, and a circle of lazy
imports is still a circle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "difftest"
README = PACKAGE.parent / "README.md"
LEAVES = {"errors", "exitcodes"}  # exception and exit-code vocabulary, importable from anywhere
TOP = {
    "cli",
    "runner",
    "run_config",
    "provenance",
    "api",
    "pytest_plugin",
    "__main__",
    "",
}  # the layer over every stage: may import anything


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every difftest import in a module, lazy ones included."""
    tree = ast.parse(path.read_text())
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = (
                ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                if node.level
                else node.module or ""
            )
            if target.split(".")[0] != "difftest":
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in MODULES:
                    found.append((submodule, "", node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, "", node.lineno) for alias in node.names if alias.name in MODULES)
    return found


def _aliases(name: str, path: Path) -> dict[str, str]:
    """Local names bound to difftest modules (``from . import cases as case_module``)."""
    tree = ast.parse(path.read_text())
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = (
                ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                if node.level
                else node.module or ""
            )
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:
                    bound[alias.asname or alias.name] = f"{target}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES and alias.asname:
                    bound[alias.asname] = alias.name
    return bound


GRAPH = {name: {target for target, _, _ in _imports(name, path) if target != name} for name, path in MODULES.items()}


def _stage(module: str) -> str:
    """The stage package a module belongs to ("" for the root package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _allowed(package: str) -> set[str]:
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text())) or ""
    match = re.search(r"May import: ([^\n.]*)", doc)
    assert match, f"difftest/{package}/__init__.py: the docstring must say what the package may import"
    listed = match.group(1).strip()
    return set() if listed.startswith("nothing") else {p.strip() for p in listed.split(",")}


PACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


def test_the_stages_are_packages_named_after_the_pipeline():
    assert set(PACKAGES) == {
        "suite",
        "export",
        "backends",
        "worker",
        "record",
        "judge",
        "localize",
        "report",
        "nightly",
    }
    loose = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert set(loose) <= LEAVES | TOP | {"__init__"}, f"modules outside any stage package: {loose}"


def test_no_import_circles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not circles, f"import circles: {circles}"


def test_no_module_imports_another_modules_private_names():
    private = []
    for name, path in MODULES.items():
        for target, imported, line in _imports(name, path):
            if imported.startswith("_") and not imported.startswith("__"):
                private.append(f"{path.relative_to(PACKAGE.parent)}:{line}: from {target} import {imported}")
        aliases = _aliases(name, path)
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and aliases[node.value.id] != name
            ):
                private.append(
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {aliases[node.value.id]}.{node.attr}"
                )
    assert not private, "private names used across modules:\n" + "\n".join(sorted(set(private)))


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_what_its_docstring_allows(package):
    allowed = _allowed(package) | LEAVES | {package}
    unknown = _allowed(package) - set(PACKAGES)
    assert not unknown, f"difftest/{package}: 'May import' names no such package: {sorted(unknown)}"
    wrong = sorted(
        {
            f"{module} -> {target}"
            for module, targets in GRAPH.items()
            if _stage(module) == package
            for target in targets
            if _stage(target) not in allowed
        }
    )
    assert not wrong, f"difftest/{package} imports what its docstring does not allow:\n" + "\n".join(wrong)


def test_data_flows_one_way_between_packages():
    """The packages' allowed imports form no circle: a stage never depends on one that depends on it."""
    allowed = {package: _allowed(package) for package in PACKAGES}
    order: list[str] = []
    remaining = dict(allowed)
    while remaining:
        ready = sorted(p for p, deps in remaining.items() if deps <= set(order))
        assert ready, f"the packages' 'May import' lists form a circle among {sorted(remaining)}"
        order.extend(ready)
        for p in ready:
            remaining.pop(p)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_says_what_it_owns(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text())) or ""
    assert len(doc.split()) >= 15, f"difftest/{package}/__init__.py needs a docstring saying what it owns"
    modules = sorted(p.stem for p in (PACKAGE / package).glob("*.py") if p.stem != "__init__")
    unnamed = [m for m in modules if f"``{m}``" not in doc and package != "backends"]
    assert not unnamed, f"difftest/{package}/__init__.py does not say what {unnamed} hold"


def test_the_readme_layout_matches_the_tree():
    text = README.read_text()
    layout = text[text.index("## Layout") :]
    layout = layout[: layout.index("\n## ", 4)] if "\n## " in layout[4:] else layout
    for package in PACKAGES:
        assert f"difftest/{package}/" in layout, f"README's layout does not list difftest/{package}/"
    for module in sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")):
        assert f"{module}.py" in layout, f"README's layout does not list difftest/{module}.py"
    for listed in re.findall(r"difftest/(\w+)/", layout):
        assert listed in PACKAGES, f"README's layout lists difftest/{listed}/, which does not exist"
