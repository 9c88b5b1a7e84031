"""The layering the design promises: lower layers never import higher ones, so there is no import circle,
not even one dodged by an import inside a function (every import statement counts, wherever it is)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ditcache"

# Every part of the package (a top-level module or subpackage), lowest first. A part may import only parts
# of lower layers (and itself); a new part must be placed here.
LAYERS = [
    {"artifact", "data", "metrics", "parallel", "pipelines", "tokens", "userpipe", "viz", "zoo"},
    {"evaluator", "forecast", "plan"},
    {"adapters", "quality", "store"},
    {"methods"},
    {"memory"},
    {"engine"},
    {"coverage", "sampling"},
    {"learn", "peers"},
    {"models"},
    {"bench"},
    {"profile"},
    {"cli_common"},
    {"cli_pipeline"},
    {"cli"},
    {"__init__", "__main__"},
]
LAYER = {part: i for i, layer in enumerate(LAYERS) for part in layer}

# Siblings kept apart although their layers would allow it: learned methods load artifacts that learn/
# writes, through artifact.py below both, so neither imports the other.
FORBIDDEN = {"learn": {"methods"}}


def _part(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imports(path: Path, source: str | None = None) -> set[str]:
    """The ditcache parts a module imports, at module level or inside functions. ``import ditcache`` (and
    ``from ditcache import <name>`` of a name that is no part) is the package's ``__init__``; its metadata
    (``__version__``) is no layer."""
    package = ["ditcache", *path.relative_to(SRC).parts[:-1]]  # what relative imports start from
    out = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            full = [*base, *(node.module.split(".") if node.module else [])]
            if full[:1] != ["ditcache"]:
                continue
            if len(full) > 1:
                out.add(full[1])
            else:  # from ditcache import a, b (or from .. import a at the top)
                out |= {a.name if (SRC / a.name).is_dir() or (SRC / f"{a.name}.py").is_file() else "__init__"
                        for a in node.names if not a.name.startswith("__")}
        elif isinstance(node, ast.Import):
            for a in node.names:
                names = a.name.split(".")
                if names[0] == "ditcache":
                    out.add(names[1] if len(names) > 1 else "__init__")
    return out


def test_every_part_has_a_layer():
    parts = {_part(p) for p in SRC.rglob("*.py")}
    assert sorted(parts - set(LAYER)) == []


def test_lower_layers_never_import_higher_ones():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        part = _part(path)
        for imported in sorted(_imports(path) - {part}):
            if imported not in LAYER or part not in LAYER:
                continue  # test_every_part_has_a_layer names it
            if LAYER[imported] >= LAYER[part] or imported in FORBIDDEN.get(part, set()):
                bad.append(f"{path.relative_to(SRC)} ({part}, layer {LAYER[part]}) imports {imported} "
                           f"(layer {LAYER[imported]})")
    assert bad == []


def test_the_import_reader_sees_function_level_and_relative_imports():
    """The reader itself, on a module written for it: relative imports two levels up inside a function, an
    absolute one, a bare ``import ditcache`` and the package's metadata (no layer)."""
    source = ("def f():\n    from ..models import x\n    from .. import zoo, __version__\n"
              "    import ditcache\n    import ditcache.engine.run\n    from .report import Row\n")
    assert _imports(SRC / "bench" / "probe.py", source) == {"models", "zoo", "__init__", "engine", "bench"}
