"""The small types every method and the engine share: actions, plans, sites, step contexts."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .parallel import SOLO, ContextGroup


class Action(enum.Enum):
    FULL = "full"          # run the module, refresh the store
    REUSE = "reuse"        # return the last computed output (order-0 prediction)
    FORECAST = "forecast"  # return the Taylor forecast from the stored factors
    PARTIAL = "partial"    # run the module on a token subset, scatter into the reuse/forecast base
    SKIP = "skip"          # contribute nothing: a branch returns zeros, a block returns its input
    BLEND = "blend"        # training only: weight * fresh + (1 - weight) * cached, differentiable in weight


@dataclass(frozen=True)
class Plan:
    """What one site does in one step (and CFG branch)."""

    action: Action
    tokens: torch.Tensor | None = None  # (B, k) int64 token indices, PARTIAL only
    order: int = 0                      # FULL: highest Taylor order to keep (0 = last output only);
    #                                     FORECAST / PARTIAL: order of the base (0 = plain reuse)
    write_back: bool = True             # PARTIAL: write the fresh tokens into the stored order-0 factor
    keep_input: bool = False            # FULL: keep the call's inputs in the store (for token scores)
    keep_keys: bool = False             # FULL: keep the raw key projections the call computes (outputs of
    #                                     to_k / add_k_proj), so a score needs no second projection (ToCa)
    propagate: tuple | None = None      # PARTIAL: (labels (B, N), K, gamma): move every token towards
    #                                     its cluster's fresh mean by gamma (ClusCa)
    weight: torch.Tensor | None = None  # BLEND: scalar (per site, L2C) or (N, 1) (per token, TokenCache)
    keep: bool = True                   # FULL: keep the output in the store (False: only its shape, for SKIP;
    #                                     methods that cache elsewhere, FreqCa, hold O(1) memory)
    verify: bool = False                # FORECAST: also compute the site's block for real (a whole-block site:
    #                                     the site), record the forecast's relative L1 error in
    #                                     store.shared[("verify", branch)] and return the real output (SpeCa's
    #                                     check; the block of a branch site is run by Executor.verify_block)
    valid: torch.Tensor | None = None   # PARTIAL under context parallelism: (B, k) bool, False on padding rows
    #                                     (a global token choice leaves each sample a different count in a
    #                                     shard: rows are padded to the most, and padding keeps its cached value)

    @property
    def n_tokens(self) -> int:
        return 0 if self.tokens is None else int(self.tokens.shape[1])


FULL = Plan(Action.FULL)
REUSE = Plan(Action.REUSE)
SKIP = Plan(Action.SKIP)


@dataclass(frozen=True)
class Holds:
    """What a method keeps for one site from a full step to the next, stated by the method (``holds(site)``)
    so that ``memory.predict`` prices each part from one full call's shapes without knowing the method."""

    output: bool = False     # the site's last full output (every stream)
    history: int = 0         # its forecaster's history up to this order (0: none)
    refreshed: bool = False  # a copy of stream 0 that partial steps edit and keep (write-back)
    staleness: bool = False  # per-token staleness counts (B, N), in the output's dtype (ToCa)
    inputs: bool = False     # the full call's inputs, kept for token scores (ToCa's attention sites)
    keys: bool = False       # the full call's raw key projections (ToCa's reused keys)
    scores: bool = False     # its layer's token scores, (B, N) float32 per stream of the layer's self-attention,
    #                          held between full steps and shared by the layer's sites (ToCa's scores)


@dataclass(frozen=True)
class SharedHolds:
    """What a method keeps once per run and CFG branch, beside its sites (``holds_shared()``)."""

    probe_clusters: int = 0  # k-means on the probe block's output with this many clusters (per frame with
    #                          frame_wise): the probe output, int64 labels and float32 centroids (ClusCa)
    frame_wise: bool = False
    final: int | None = None  # the final layer's input and this many high-band differences (FreqCa)


@dataclass
class Site:
    """One hookable branch of one block."""

    name: str          # module path inside the model, e.g. "transformer_blocks.3.ff"
    kind: str          # "attn" | "cross_attn" | "mlp" | "block"
    layer: int         # index of the block among all cached blocks, in model order
    module: nn.Module
    partial: str | None  # how the module runs on a token subset ("tokens", "self_kv"), None if it can't
    stream: str = "image"  # tokens it sees: "image", "text" (Flux/SD3 context stream) or "joint" (both)
    index: int = 0     # position in the run's site list
    block: nn.Module | None = None  # the block holding the branch
    role: str = "spatial"  # "temporal": the block's rows are token positions and its tokens frames (Latte)


@dataclass
class StepContext:
    """What a method may look at when it plans one model call."""

    step: int            # 0-based index of the denoising step in this generation
    num_steps: int       # T
    progress: float      # step / (T - 1), in [0, 1]; 0 = first (noisiest) step
    timestep: float      # the timestep value the model was called with
    branch: int          # 0 for the first call of a step, 1, 2, ... for repeated (split CFG) calls
    batch_size: int
    grid: tuple[int, int, int] | None  # (frames, H, W) of the image tokens, when the adapter knows it
    #                                    (of the whole sequence under context parallelism)
    shards: ContextGroup = SOLO  # the context-parallel group the tokens are sharded over (SOLO: none)
    extra: dict = field(default_factory=dict)


# Highest forecast order a method may ask for: the TaylorSeer authors use up to 4 (DiT); each further order
# divides by one more step gap and amplifies the noise of the finite differences.
MAX_ORDER = 4


def check_order(method: str, order) -> None:
    if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= MAX_ORDER:
        raise ValueError(f"{method}.order must be an int in 0..{MAX_ORDER}, got {order!r}")


def periodic_full(step: int, warmup: int, interval: int) -> bool:
    """Full for the first ``warmup`` steps, then on every ``interval``-th step after them (L2C's
    alternation with warmup 0: steps 0, 2, 4, ...)."""
    return step < warmup or (step - warmup) % interval == 0


def counter_full(step: int, first_enhance: int, interval: int | float, stop: int | None = None) -> bool:
    """TaylorSeer's schedule (and ClusCa's, SpeCa's): the first ``first_enhance`` steps are full; then a
    counter, reset at every full step, triggers a full step when it reaches ``interval - 1``. So the
    full steps are 0..W-1 and W-1+N, W-1+2N, ...: with W = 2, N = 4 and 50 steps, 0, 1, 5, 9, ..., 49.
    A fractional ``interval`` (a float >= 1, TaylorSeer's and HyCa's) spaces them evenly at W-1 + floor(j N + 1/2),
    j = 1, 2, ... (N = 45/7 with W = 2: 7, 14, 20, 27, 33, 40, 46); a whole N gives the counter's steps.
    ``stop``: from this step on, no full step after the warm-up (the run's forecast tail; None: no tail)."""
    if step < first_enhance:
        return True
    if stop is not None and step >= stop:
        return False
    k = step - first_enhance + 1                       # steps since the last warm-up step
    if isinstance(interval, int):
        return k % interval == 0
    j = math.ceil((k - 0.5) / interval)                # the only j whose j N rounds to k, if any (N >= 1)
    return j >= 1 and math.floor(j * interval + 0.5) == k


def counter_steps(num_steps: int, warmup: int | float, interval: int | float, tail: int | float = 0) -> list[int]:
    """The full steps of TaylorSeer's schedule (``counter_full``) over a run of ``num_steps``, the warm-up read
    by ``leading`` (an int, or a share of the run) and the forecast tail by ``tail_start``."""
    w, stop = leading(warmup, num_steps), tail_start(tail, num_steps)
    return [s for s in range(num_steps) if counter_full(s, w, interval, stop)]


def leading(warmup: int | float, num_steps: int) -> int:
    """The leading full steps of a run of ``num_steps``: ``warmup`` itself when an int; a float in (0, 1) is that
    share of the run, rounded to the nearest step and at least 1, so one setting serves 50 steps and 8 (0.06: 3 of
    50 steps, the references' first_enhance, and 1 of 8)."""
    return max(1, round(warmup * num_steps)) if isinstance(warmup, float) else warmup


def check_warmup(method: str, warmup) -> None:
    """A warm-up of TaylorSeer's schedule: an int >= 1, or a float in (0, 1), a share of the run (``leading``)."""
    whole = isinstance(warmup, int) and not isinstance(warmup, bool) and warmup >= 1
    if not (whole or (isinstance(warmup, float) and 0.0 < warmup < 1.0)):
        raise ValueError(f"{method}.warmup must be an int >= 1 (leading full steps; step 0 has nothing to forecast "
                         f"from) or a float in (0, 1) (that share of the run, at least one step), got {warmup!r}")


def tail_start(tail: int | float, num_steps: int) -> int:
    """The first step of a run's forecast tail (``counter_full``'s ``stop``): the run of ``num_steps`` ends with
    ``tail`` steps in which no step is full after the warm-up; a float tail in [0, 1) is that share of the run,
    rounded to the nearest step."""
    return num_steps - (round(tail * num_steps) if isinstance(tail, float) else tail)


def check_interval(method: str, interval) -> None:
    """A counter interval: an int >= 1, or a float >= 1 (full steps spaced evenly at that fractional gap)."""
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval >= 1:
        raise ValueError(f"{method}.interval must be an int >= 1, or a float >= 1 (evenly spaced full steps at that "
                         f"gap), got {interval!r}")


def check_tail(method: str, tail) -> None:
    """A forecast tail: an int >= 0 (trailing steps) or a float in [0, 1) (that share of the run)."""
    whole = isinstance(tail, int) and not isinstance(tail, bool) and tail >= 0
    if not (whole or (isinstance(tail, float) and 0.0 <= tail < 1.0)):
        raise ValueError(f"{method}.tail must be an int >= 0 (trailing steps with no full step) or a float in "
                         f"[0, 1) (that share of the run), got {tail!r}")


def kept_order(step: int, warmup: int, order: int) -> int:
    """TaylorSeer's derivative guard (and every method on its schedule): a full step before the last warm-up
    step keeps only its output (order 0), so the first differences span the last warm-up step and the first
    full step after it; from the last warm-up step on it extends the differences up to ``order``. The
    reference writes it ``s < T - first_enhance + 1`` counting down (DiT) and ``s > first_enhance - 2``
    counting up (FLUX): both are ``step >= warmup - 1`` here."""
    return 0 if step < warmup - 1 else order


def countdown_full(step: int, num_steps: int, interval: int) -> bool:
    """FORA's (and ToCa-DiT's) schedule, written in the reference's count-down index s = T - 1 - step:
    full iff s == T - 1 (the first step) or s % N == 0, so the last step (s = 0) is always full."""
    s = num_steps - 1 - step
    return step == 0 or s % interval == 0


def plan_to_dict(plan: Plan) -> dict:
    """A JSON-able record of a plan (tokens and cluster labels as nested lists), for traces."""
    d = {"action": plan.action.value, "order": plan.order, "write_back": plan.write_back}
    if plan.tokens is not None:
        d["tokens"] = plan.tokens.tolist()
    if plan.propagate is not None:
        labels, k, gamma = plan.propagate
        d["propagate"] = [labels.tolist(), k, gamma]
    return d


def plan_from_dict(d: dict, device: torch.device | str = "cpu") -> Plan:
    tokens = torch.tensor(d["tokens"], dtype=torch.long, device=device) if "tokens" in d else None
    prop = d.get("propagate")
    if prop is not None:
        prop = (torch.tensor(prop[0], dtype=torch.long, device=device), prop[1], prop[2])
    return Plan(Action(d["action"]), tokens=tokens, order=d["order"], write_back=d["write_back"], propagate=prop)
