"""The house reads top-down: cli -> verbs -> job -> state -> backends -> decide, with errors,
trust, userfiles and testhooks at the bottom; no module imports a layer above its own (lazy
imports inside functions included), and decide/ touches no kernel."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lark_async.cli

PACKAGE = Path(lark_async.cli.__file__).parent
LAYERS = ["cli", "verbs", "job", "state", "backends", "decide", "base"]
BASE = {"errors", "trust", "userfiles", "testhooks"}


def layer(module: str) -> str:
    """``lark_async.x.y`` -> its layer (the package's own ``__init__`` is the top's)."""
    top = module.split(".")[1] if "." in module else "cli"
    return "base" if top in BASE else "cli" if top == "__init__" else top


def imports(path: Path) -> list[str]:
    """Every lark_async module ``path`` imports, resolved to absolute names."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "lark_async":
                found += [f"lark_async.{a.name}" for a in node.names]
            elif target.startswith("lark_async."):
                found.append(target)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("lark_async.")]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer():
    for path in MODULES:
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        assert layer(module) in LAYERS, module


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_climbs_back_up(path):
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    mine = LAYERS.index(layer(module))
    upward = [m for m in imports(path) if LAYERS.index(layer(m)) < mine]
    assert not upward, f"{module} imports from above its layer: {upward}"


def test_decisions_import_no_kernel_library():
    kernel = {"pyroute2", "netfilterqueue", "socket", "ctypes", "fcntl", "trio"}
    for path in (PACKAGE / "decide").glob("*.py"):
        tops = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops.add(node.module.split(".")[0])
        assert not tops & kernel, f"{path.name} imports {tops & kernel}"


def test_every_test_file_has_a_name_of_its_own():
    """pytest imports test files by basename (no packages here): two files of one name make
    the whole run stop at collection."""
    tests = Path(__file__).resolve().parents[1]
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
