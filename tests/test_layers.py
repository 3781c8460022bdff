"""The package's layers: every import (module-level or inside a function) goes down, never up or around.

A module may import a module of a lower layer, or a sibling of its own folder (``fit._e2e`` ->
``fit._classical``) as long as the siblings' imports form no cycle. ``plot`` imports nothing of
ndjax, and nothing imports ``compat`` or ``cli`` but ``ndjax/__init__.py`` and ``__main__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ndjax

ROOT = Path(ndjax.__file__).parent

#: Layer of each module or folder, lowest first (a folder's modules share its layer).
LAYERS = [
    ("_version", "_math", "_checks", "_progress", "_settings", "_memory", "_atomic"),
    ("_stimulus",),
    ("models",),
    ("_simulate", "_analysis", "_words_io"),
    ("fit",),
    ("studies",),
    ("plot",),
    ("compat",),
    ("cli",),
    ("__init__", "__main__"),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _unit(module: str) -> str:
    """The layer unit of a module: its top folder, or the module itself at the top."""
    return module.split(".")[0]


def _imports(module: str, path: Path) -> set[str]:
    """ndjax-internal modules imported anywhere in the file (relative to the package root)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    here = module.split(".") if module != "__init__" else []
    base = here if is_pkg else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = [*anchor, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == "ndjax":
                target = node.module.split(".")[1:]
            else:
                continue
            names = [a.name for a in node.names]
            for name in names:  # "from . import plot" names a module
                candidate = ".".join([*target, name])
                found.add(candidate if candidate in MODULES else ".".join(target))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "ndjax":
                    found.add(".".join(a.name.split(".")[1:]))
    return {f for f in found if f and f != module}


MODULES = _modules()


def test_every_module_has_a_layer():
    missing = sorted({_unit(m) for m in MODULES} - set(RANK))
    assert not missing, f"modules without a layer in tests/test_layers.py: {missing}"


def test_imports_only_go_down_the_layers():
    bad = []
    for module, path in MODULES.items():
        unit = _unit(module)
        for target in _imports(module, path):
            t_unit = _unit(target)
            if t_unit == unit:
                continue  # a sibling in the same folder: checked for cycles below
            if unit == "plot":
                bad.append(f"{module} -> {target} (plot imports nothing of ndjax)")
            elif t_unit in ("compat", "cli") and unit not in ("__init__", "__main__", t_unit):
                bad.append(f"{module} -> {target} (only ndjax/__init__ imports {t_unit})")
            elif RANK[t_unit] >= RANK[unit] and module not in ("__init__", "__main__"):
                bad.append(f"{module} -> {target} (layer {RANK[unit]} imports layer {RANK[t_unit]})")
    assert not bad, "upward or sideways imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycle():
    graph = {m: {t for t in _imports(m, p) if t in MODULES} for m, p in MODULES.items() if m != "__init__"}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from ..cli import _main\n    from .. import plot\n")
    assert _imports("studies._x", src) == {"cli._main", "plot"}
