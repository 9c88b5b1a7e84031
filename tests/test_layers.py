"""The layering the design promises: lower layers never import higher ones (no import circles)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ditcache"

# package part -> parts it must never import (directly, at module level or inside functions)
FORBIDDEN = {
    "plan": {"engine", "methods", "learn", "bench", "cli", "models", "forecast"},
    "forecast": {"engine", "methods", "learn", "bench", "cli", "models"},
    "artifact": {"engine", "methods", "learn", "bench", "cli", "models"},
    "store": {"engine", "methods", "learn", "bench", "cli", "models"},
    "tokens": {"engine", "methods", "learn", "bench", "cli", "models"},
    "methods": {"engine", "learn", "bench", "cli", "models", "sampling"},
    "learn": {"methods", "bench", "cli", "models"},
    "engine": {"learn", "bench", "cli", "models", "sampling"},
}


def _part(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """Top-level ditcache parts a module imports (relative or absolute)."""
    depth = len(path.relative_to(SRC).parts) - 1
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: climb to the package root, then the first name is the part
                if node.level > depth:
                    names = (node.module or "").split(".")
                    out.add(names[0] if names[0] else node.names[0].name)
                elif node.level == depth and depth > 0 and node.module:
                    continue  # a sibling inside the same part
            elif node.module and node.module.startswith("ditcache."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("ditcache.")}
    return out


def test_lower_layers_never_import_higher_ones():
    bad = []
    for path in SRC.rglob("*.py"):
        part = _part(path)
        for imported in _imports(path) & FORBIDDEN.get(part, set()):
            bad.append(f"{path.relative_to(SRC)} imports {imported}")
    assert bad == []
