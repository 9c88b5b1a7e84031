"""Which diffusers transformer classes ditcache maps, read off the code: every ``nn.Module`` class in
``diffusers.models.transformers`` is built on the meta device (no memory; ``adapters.META`` gives the
arguments of classes whose defaults do not build) and hooked with FORA, as a user's ``ditcache.apply``
would. A class is mapped when that succeeds; otherwise the row carries the reason (``adapters.UNMAPPED``,
or the error). ``ditcache models`` prints the listing; the README's supported-models table is
``markdown(listing())`` (tests/test_coverage.py fails when they disagree)."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from . import adapters

# Methods every mapped class runs; the learned ones (marked *) after `ditcache train` on that model.
ALWAYS = ("fora", "taylorseer", "speca", "hyca*", "l2c*")


@dataclass
class Row:
    cls: str                   # diffusers class name
    mapped: bool
    family: str = ""           # the adapters/ file holding its entries
    reason: str = ""           # why it is not mapped
    blocks: dict[str, int] = field(default_factory=dict)  # cached block class -> how many
    sites: dict[str, int] = field(default_factory=dict)   # branch kind -> sites
    token_path: bool = False   # some site can run on a token subset (ToCa, TokenCache; ClusCa on image MLPs)
    methods: tuple[str, ...] = ()


def transformer_classes() -> list[type]:
    """Every nn.Module class exported by diffusers.models.transformers, by name."""
    from diffusers.models import transformers

    found = {n: getattr(transformers, n) for n in dir(transformers)}
    return [c for n, c in sorted(found.items()) if isinstance(c, type) and issubclass(c, nn.Module)]


def probe(cls: type) -> Row:
    """Build ``cls`` on the meta device and hook it, as ``ditcache.apply(model, FORA())`` does."""
    from .engine import apply
    from .methods import FORA

    name = cls.__name__
    family = adapters.FAMILIES.get(name, "")
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model = cls(**adapters.META.get(name, {}))
    except Exception as e:  # noqa: BLE001 - any constructor failure is a reason to report, not to raise
        return Row(name, False, family, adapters.UNMAPPED.get(name) or f"does not build from its defaults ({e})")
    try:
        run = apply(model, FORA())
    except (TypeError, ValueError) as e:
        return Row(name, False, family, adapters.UNMAPPED.get(name) or str(e).split(". ")[0])
    try:
        sites = run.sites
        blocks = Counter(type(b).__name__ for b in dict.fromkeys(s.block for s in sites))
        kinds = Counter(s.kind for s in sites)
        token = any(s.partial for s in sites)
        image_mlp = any(s.partial and s.kind == "mlp" and s.stream == "image" and s.role == "spatial" for s in sites)
        final = adapters.model_spec(model).final
        methods = list(ALWAYS)
        if final and isinstance(getattr(model, final, None), nn.Module):
            methods.append("freqca")
        if token:
            methods += ["toca", "tokencache*"]
        if image_mlp:
            methods.append("clusca")
        return Row(name, True, family or adapters.FAMILIES.get(next(iter(blocks)), ""), "", dict(blocks),
                   {k: kinds[k] for k in adapters.KINDS if kinds[k]}, token, tuple(methods))
    finally:
        run.remove()


def listing() -> list[Row]:
    return [probe(c) for c in transformer_classes()]


def _sites(row: Row) -> str:
    return ", ".join(f"{k} {v}" for k, v in row.sites.items())


def text(rows: list[Row]) -> str:
    """What ``ditcache models`` prints."""
    mapped = [r for r in rows if r.mapped]
    lines = [f"{len(mapped)} of {len(rows)} diffusers transformer classes mapped (diffusers' default configs, "
             "probed on the meta device)", ""]
    for r in mapped:
        lines.append(f"  {r.cls:42s} {r.family:16s} {_sites(r)}; token path {'yes' if r.token_path else 'no'}")
        lines.append(f"  {'':42s} blocks: {', '.join(f'{b} x{n}' for b, n in r.blocks.items())}")
        lines.append(f"  {'':42s} methods: {' '.join(r.methods)}")
    lines += ["", "Not mapped:"]
    lines += [f"  {r.cls:42s} {r.reason}" for r in rows if not r.mapped]
    lines += ["", "* learned: train the artifact on your model first (ditcache train ...)."]
    return "\n".join(lines)


def markdown(rows: list[Row]) -> str:
    """The README's supported-models tables."""
    mapped = [r for r in rows if r.mapped]
    out = [f"{len(mapped)} of {len(rows)} classes in `diffusers.models.transformers` (diffusers 0.42.1) are mapped. "
           "Sites are counted at each class's default configuration; * marks learned methods, which need "
           "`ditcache train` on the model first.", "",
           "| class | adapter | sites | token path | methods |", "|---|---|---|---|---|"]
    out += [f"| {r.cls} | {r.family} | {_sites(r)} | {'yes' if r.token_path else 'no'} | {' '.join(r.methods)} |"
            for r in mapped]
    out += ["", "Not mapped, and why:", "", "| class | reason |", "|---|---|"]
    out += [f"| {r.cls} | {r.reason.replace('|', '/')} |" for r in rows if not r.mapped]
    return "\n".join(out)


def write_readme(path: str) -> None:
    """Replace the README's tables (between its models markers) with the listing: ``python -m ditcache.coverage
    README.md`` after mapping a class."""
    import re
    from pathlib import Path

    p = Path(path)
    text_ = p.read_text()
    pattern = re.compile(r"(<!-- models:start -->\n).*?(<!-- models:end -->)", re.S)
    if not pattern.search(text_):
        raise ValueError(f"{path} has no '<!-- models:start -->' / '<!-- models:end -->' markers")
    p.write_text(pattern.sub(lambda m: m.group(1) + markdown(listing()) + "\n" + m.group(2), text_))


if __name__ == "__main__":
    import sys

    write_readme(sys.argv[1] if len(sys.argv) > 1 else "README.md")
