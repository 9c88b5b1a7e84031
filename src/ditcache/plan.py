"""The small types every method and the engine share: actions, plans, sites, step contexts."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch
from torch import nn


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
    verify: bool = False                # FORECAST: also compute the site for real, record the forecast's
    #                                     relative L1 error in store.shared[("verify", branch)], and return
    #                                     the real output (SpeCa's check)

    @property
    def n_tokens(self) -> int:
        return 0 if self.tokens is None else int(self.tokens.shape[1])


FULL = Plan(Action.FULL)
REUSE = Plan(Action.REUSE)
SKIP = Plan(Action.SKIP)


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


def counter_full(step: int, first_enhance: int, interval: int) -> bool:
    """TaylorSeer's schedule (and ClusCa's, SpeCa's): the first ``first_enhance`` steps are full; then a
    counter, reset at every full step, triggers a full step when it reaches ``interval - 1``. So the
    full steps are 0..W-1 and W-1+N, W-1+2N, ...: with W = 2, N = 4 and 50 steps, 0, 1, 5, 9, ..., 49."""
    return step < first_enhance or (step - first_enhance + 1) % interval == 0


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
