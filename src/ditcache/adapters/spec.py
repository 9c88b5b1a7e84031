"""The types every adapter entry is written in: a block's branches, a block, a lean rule, a model (and
``adaln_chunks`` / ``table_chunks``, the gates that lean and finish rules read from diffusers' adaLN-zero norms
and adaLN-single tables).

An entry says, for one block class, which child modules are branches (what kind, which tokens they see,
whether they can run on a token subset) and, for one model class, how its forward is called (the timestep
argument, where the token grid comes from, which blocks stay uncached). Family files (``adapters/*.py``)
hold the entries; ``adapters/__init__.py`` merges them into the registries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

KINDS = ("attn", "cross_attn", "mlp", "block")
PARTIAL_MODES = (None, "tokens", "self_kv")
STREAMS = ("image", "text", "joint")


@dataclass(frozen=True)
class Branch:
    child: str               # attribute of the block holding the branch module; "" = the whole block
    kind: str                # one of KINDS
    partial: str | None = None  # "tokens": the module is token-wise or cross-attention, run it on the subset;
    #                           "self_kv": self-attention, run with queries from the subset, keys/values
    #                           from all tokens (passed as encoder_hidden_states); None: no token subset path
    stream: str = "image"    # which tokens the branch sees: "image", "text", or "joint" (both, e.g. joint attention)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Branch kind must be one of {KINDS}, got {self.kind!r}")
        if self.partial not in PARTIAL_MODES:
            raise ValueError(f"Branch partial mode must be one of {PARTIAL_MODES}, got {self.partial!r}")
        if self.stream not in STREAMS:
            raise ValueError(f"Branch stream must be one of {STREAMS}, got {self.stream!r}")
        if self.kind == "block" and self.child:
            raise ValueError("a 'block' branch is the block itself: leave child empty")


@dataclass(frozen=True)
class BlockSpec:
    branches: tuple[Branch, ...]
    # For whole-block sites: which forward argument each returned stream is the residual of, so the
    # store can cache (output - input) and a reuse step returns input + cached residual.
    outputs: tuple[str, ...] = ()
    image_out: int | None = None  # the block returns a tuple and this element is the image stream
    # Whole-block sites whose gate is known: the child whose output is the pre-gate branch output (cached
    # instead of the residual), and the key of FINISH, which applies the current step's gate and residual
    # to a cached pre-gate output (cheap: a norm and a linear on the timestep embedding).
    pre_gate: str | None = None
    finish: str | None = None
    text_first: bool = True  # joint attention order: [text; image] (Flux, SD3) or [image; text] (HunyuanVideo)
    # Branch blocks: the key of LEAN (a LeanRule), which builds the block's output from its branches' cached
    # outputs alone on a call where every branch reuses or forecasts, skipping the norms and modulations that
    # only feed the branches: on such a step they are most of what is left to compute. None: the block always
    # runs its own forward.
    lean: str | None = None


@dataclass(frozen=True)
class LeanRule:
    """How to build a branch block's output from its cached branches (see ``BlockSpec.lean``)."""

    # (block, inputs: its forward's bound arguments, cached: child name -> that branch's cached output, as the
    # module returns it) -> the block's output; or None, before reading any branch, for inputs it does not cover
    build: Callable
    # the classes (module.qualname) whose forward ``build`` reproduces: a block of another class with the same
    # name (a user's copy, another module's variant) runs its own forward
    forward_of: tuple[str, ...]
    # per-token branches (token path "tokens": MLPs) the rule also serves when they compute a token subset
    # (PARTIAL: ClusCa's refresh, ToCa's MLP rows). It reads them as ``cached(child, rows)``, ``rows(idx)`` giving
    # the branch's input at rows idx (B, k) only: (B, k, D), its norm and modulation run on k rows instead of N
    # (exact: both act on each token alone). Empty: a call with a PARTIAL branch runs the block's forward.
    partial: tuple[str, ...] = ()

    def serves(self, block) -> bool:
        return f"{type(block).__module__}.{type(block).__qualname__}" in self.forward_of


def adaln_chunks(norm, emb, n: int) -> tuple:
    """The ``n`` modulation chunks (shift, scale, gate, ...; each (B, D)) that diffusers' adaLN-zero norms
    (AdaLayerNormZero, AdaLayerNormZeroSingle, SD35AdaLayerNormZeroX) compute from ``emb`` (B, E): their linear
    on SiLU(emb), without normalising any input. Lean and finish rules read their gates from it."""
    return norm.linear(norm.silu(emb)).chunk(n, dim=1)


def table_chunks(table, timestep, batch: int) -> tuple:
    """The six modulation chunks (shift, scale, gate for attention, then for the MLP; each (B, 1, D)) of an
    adaLN-single block (PixArt's layout, also Sana's): the block's table (6, D) plus the model's per-sample
    timestep embedding ``timestep`` (B, 6 D)."""
    return (table[None] + timestep.reshape(batch, 6, -1)).chunk(6, dim=1)


@dataclass(frozen=True)
class ModelSpec:
    timestep_arg: str = "timestep"  # name of the forward argument holding the timestep
    grid: str | None = None          # key of GRIDS: how to read (frames, H, W) of the image tokens
    final: str | None = "norm_out"   # the child whose first input is the blocks' output on the image tokens
    #                                  (FreqCa caches and replaces it); most diffusers families: norm_out
    temporal: str | None = None      # module-path prefix of blocks whose rows are token positions and whose
    #                                  tokens are frames (Latte's temporal_transformer_blocks): their sites get
    #                                  role "temporal", every other site "spatial"
    no_attention_score: str = ""     # why ToCa's attention score cannot be recomputed for this class (its
    #                                  attention rotates or masks in a way the score does not reproduce);
    #                                  "" when it can. ToCa(score="attention") is then refused before any step
    uncached: tuple[str, ...] = ()   # module-path prefixes of known blocks left uncached: refiners that run on
    #                                  one stream before the main blocks (Z-Image's, Lumina 2's), side branches
