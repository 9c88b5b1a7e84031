"""What ditcache knows about each model family, as data.

``BLOCKS`` maps a block class name to its branches; ``MODELS`` maps a model class name to how its
forward is called (which argument is the timestep, where the token grid comes from). A model is
mapped by finding every submodule whose class is in ``BLOCKS`` (in module order, so Flux's
double-stream blocks come before its single-stream ones). Each family is one file of this package
holding its entries (``BLOCKS``, ``MODELS``, and where needed ``FINISH``, ``LEAN``, ``GRIDS``, ``UNMAPPED``: classes
that cannot be mapped, with the reason, and ``META``: constructor arguments for classes that do not build
from their defaults); they are merged here at import, and a name defined twice fails loudly. Supporting a
new family means adding a file, or calling ``register_block`` / ``register_model`` from user code.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

import torch
from torch import nn

from ..plan import Site
from .grids import GRIDS as _SHARED_GRIDS
from .spec import KINDS, PARTIAL_MODES, STREAMS, BlockSpec, Branch, LeanRule, ModelSpec

__all__ = ["KINDS", "PARTIAL_MODES", "STREAMS", "Branch", "BlockSpec", "LeanRule", "ModelSpec", "BLOCKS", "MODELS",
           "FINISH", "LEAN", "GRIDS", "UNMAPPED", "META", "FAMILIES", "register_block", "register_model", "model_spec",
           "find_sites", "block_spec", "lean_rule", "token_grid", "timestep_value"]

_NOT_FAMILIES = {"spec", "grids"}


def _merge(into: dict, entries: dict, what: str, family: str, owner: dict) -> None:
    for name, value in entries.items():
        if name in into:
            raise RuntimeError(f"ditcache.adapters: {what} {name!r} is defined by both {owner[name]} and {family}")
        into[name] = value
        owner[name] = family


def _load_families() -> tuple[dict, ...]:
    """Every family file's tables, merged; FAMILIES maps each model or block class name to its file."""
    tables: tuple[dict, ...] = ({}, {}, {}, {}, dict(_SHARED_GRIDS), {}, {})
    owners: tuple[dict, ...] = tuple({} for _ in tables)
    families: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name in _NOT_FAMILIES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for table, owner, attr in zip(tables, owners, ("BLOCKS", "MODELS", "FINISH", "LEAN", "GRIDS", "UNMAPPED",
                                                "META")):
            _merge(table, getattr(module, attr, {}), attr, info.name, owner)
        for name in (*getattr(module, "BLOCKS", {}), *getattr(module, "MODELS", {}), *getattr(module, "UNMAPPED", {})):
            families[name] = info.name
    return (*tables, families)


BLOCKS, MODELS, FINISH, LEAN, GRIDS, UNMAPPED, META, FAMILIES = _load_families()
for _name, _spec in BLOCKS.items():
    if _spec.lean is not None and _spec.lean not in LEAN:
        raise RuntimeError(f"ditcache.adapters: block {_name!r} names lean rule {_spec.lean!r}, which no family "
                           "defines")
# BLOCKS: block class name -> BlockSpec; MODELS: model class name -> ModelSpec; FINISH: gate rules of whole-block
# sites; LEAN: rules building a branch block's output from its cached branches (BlockSpec.lean); GRIDS: token-grid
# rules; UNMAPPED: model class name -> why it cannot be mapped; META: model class name -> constructor kwargs for
# building it on the meta device (classes whose defaults do not build).


def register_block(cls: type | str, *branches: Branch, outputs: tuple[str, ...] = (),
                   image_out: int | None = None, pre_gate: str | None = None, finish: str | None = None,
                   text_first: bool = True, lean: Callable | None = None) -> None:
    """Teach ditcache a block class:
    ``register_block(MyBlock, Branch("attn", "attn"), Branch("mlp", "mlp", "tokens"))``.

    ``lean`` (optional, branch blocks only): ``lean(block, inputs, cached) -> output``, the block's output built
    from its cached branches on a call where every branch reuses or forecasts, skipping the norms that only feed
    them (``inputs``: the forward's bound arguments by name; ``cached(child)``: that branch's cached output, as
    the module returns it; return None, before calling ``cached``, for inputs it does not cover). It serves
    ``cls`` itself only (a subclass or a same-named class runs its own forward), so ``cls`` must be the class."""
    name = cls if isinstance(cls, str) else cls.__name__
    if not branches:
        raise ValueError("register_block needs at least one Branch")
    if (pre_gate is None) != (finish is None):
        raise ValueError("register_block: pre_gate and finish go together (or neither)")
    if finish is not None and finish not in FINISH:
        raise KeyError(f"unknown finish rule {finish!r}; known: {sorted(FINISH)}")
    rule = None
    if lean is not None:
        if isinstance(cls, str):
            raise TypeError(f"register_block({name!r}, lean=...): pass the block class, not its name (a lean rule "
                            "serves the one class whose forward it reproduces)")
        if not callable(lean):
            raise TypeError(f"register_block({name}, lean=...): lean must be a function (block, inputs, cached) "
                            f"-> output, got {type(lean).__name__}")
        if any(b.kind == "block" for b in branches):
            raise ValueError(f"register_block({name}, lean=...): a whole-block site has no branches to build "
                             "the output from")
        qualname = f"{cls.__module__}.{cls.__qualname__}"
        rule = f"user:{qualname}"  # its own key: no family rule is replaced
        LEAN[rule] = LeanRule(lean, (qualname,))
    BLOCKS[name] = BlockSpec(tuple(branches), outputs, image_out, pre_gate, finish, text_first, lean=rule)


def register_model(cls: type | str, spec: ModelSpec) -> None:
    """Teach ditcache how a model class is called (only needed if its timestep argument is not 'timestep')."""
    MODELS[cls if isinstance(cls, str) else cls.__name__] = spec


def model_spec(model: nn.Module) -> ModelSpec:
    return MODELS.get(type(model).__name__, ModelSpec())


def find_sites(model: nn.Module) -> list[Site]:
    """Every branch of every known block, in model order. Raises if the model has no known block."""
    sites: list[Site] = []
    layer = 0
    mspec = model_spec(model)
    temporal = mspec.temporal
    for name, block in model.named_modules():
        spec = BLOCKS.get(type(block).__name__)
        if spec is None or any(name == p or name.startswith(p + ".") for p in mspec.uncached):
            continue
        for branch in spec.branches:
            module = getattr(block, branch.child, None) if branch.child else block
            if module is None:
                continue
            if not isinstance(module, nn.Module):
                raise TypeError(f"{type(block).__name__}.{branch.child} is not a module")
            full = f"{name}.{branch.child}" if branch.child else name
            role = "temporal" if temporal and name.startswith(temporal) else "spatial"
            sites.append(Site(full, branch.kind, layer, module, branch.partial, branch.stream, len(sites), block,
                              role))
        layer += 1
    if not sites:
        reason = UNMAPPED.get(type(model).__name__)
        if reason is not None:
            raise TypeError(f"ditcache cannot map {type(model).__name__}: {reason}. If you know where its branches "
                            "are, ditcache.register_block(...) teaches ditcache its block.")
        raise TypeError(
            f"ditcache cannot map {type(model).__name__}: none of its submodules is a known block. "
            f"Supported models: {sorted(MODELS)}; known blocks: {sorted(BLOCKS)}. "
            "Register your block with ditcache.register_block(...)."
        )
    return sites


def block_spec(block: nn.Module) -> BlockSpec:
    return BLOCKS[type(block).__name__]


def lean_rule(block: nn.Module) -> LeanRule | None:
    """The lean rule that serves ``block`` (its spec names one and it reproduces this class's forward), or None."""
    name = block_spec(block).lean
    rule = LEAN[name] if name is not None else None
    return rule if rule is not None and rule.serves(block) else None


def token_grid(model: nn.Module, inputs: dict) -> tuple[int, int, int] | None:
    rule = model_spec(model).grid
    if rule is None:
        return None
    try:
        return GRIDS[rule](model, inputs)
    except (KeyError, AttributeError, TypeError, IndexError):
        return None


def timestep_value(t) -> float:
    """The step's timestep from a timestep argument (tensor, number, or a list of them), as a Python float: the
    largest element, so per-token timesteps (Wan 2.2 TI2V's expand_timesteps gives the clean first frame's
    tokens 0) read as the step's noise level, not as the first token's constant 0."""
    if isinstance(t, (list, tuple)):
        return max(timestep_value(x) for x in t)
    if isinstance(t, torch.Tensor):
        return float(t.max()) if t.numel() else 0.0
    return float(t)
