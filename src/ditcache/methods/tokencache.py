"""TokenCache (Lou et al., arXiv 2409.18523): learned token importance and a two-phase schedule.

A trained predictor gives each (step, site, token) an importance that does not depend on the input.
Full steps follow the Two-Phase Round-Robin schedule: every ``k1`` steps before progress ``boundary``
and every ``k2`` steps after it (early, noisy steps are more alike, so the early phase is sparser; the
paper's talk summary). On the steps between, the ``ratio`` share of all tokens with the highest
predicted importance is recomputed; with ``adaptive`` the share is allocated across blocks by that
global ranking (blocks that matter get more tokens), else every block gets ``ratio``. Sites without a
token-subset path are computed iff their learned weight exceeds 0.5, else reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..plan import FULL, REUSE, Action, Plan, Site, StepContext
from .artifacts import load_artifact


@dataclass
class TokenCache:
    artifact: str = "dit"     # a predictor file, or the name of a shipped default ('dit' | 'flux')
    ratio: float = 0.3        # share of tokens recomputed on cache steps (the predictor's training target)
    k1: int = 4               # full-step interval in the early phase (chosen by measurement; resolve note)
    k2: int = 2               # full-step interval in the late phase
    boundary: float = 0.5     # progress where the late phase starts
    adaptive: bool = True     # allocate tokens across blocks by the global importance ranking

    name: ClassVar[str] = "tokencache"

    def __post_init__(self) -> None:
        self.validate()
        self._art = None

    def validate(self) -> None:
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"TokenCache.ratio must be in [0, 1], got {self.ratio}")
        if self.k1 < 1 or self.k2 < 1:
            raise ValueError("TokenCache.k1 and k2 must be >= 1")
        if not 0.0 <= self.boundary <= 1.0:
            raise ValueError(f"TokenCache.boundary must be in [0, 1], got {self.boundary}")

    def bind(self, model, sites: list[Site]) -> None:
        art = load_artifact(self.artifact, "tokencache")
        art.check_model(model)
        if art.tensors["tokens"].numel() != len(sites):
            raise ValueError(f"predictor has {art.tensors['tokens'].numel()} sites, the model {len(sites)}")
        self._art = art

    def full_step(self, step: int, num_steps: int) -> bool:
        """TPRR: full at step 0, then every k1 steps in the early phase, every k2 in the late one."""
        last = 0
        for s in range(1, step + 1):
            k = self.k1 if s / max(num_steps - 1, 1) < self.boundary else self.k2
            if s - last >= k:
                last = s
        return last == step

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        self._art.check_step(ctx.step, ctx.num_steps, ctx.timestep)
        if self.full_step(ctx.step, ctx.num_steps):
            return [FULL] * len(sites)
        tokens = self._art.tensors["tokens"].tolist()
        w = torch.sigmoid(self._art.tensors["logits"][ctx.step])            # (S, N)
        counts = self._allocate(w, tokens)
        plans = []
        for site, n, k in zip(sites, tokens, counts):
            if n == 1:
                plans.append(FULL if w[site.index, 0] > 0.5 else REUSE)
            elif k == 0:
                plans.append(REUSE)
            else:
                idx = w[site.index, :n].topk(k).indices                      # (k,) the same for every sample
                plans.append(Plan(Action.PARTIAL, tokens=idx.expand(ctx.batch_size, -1)))
        return plans

    def _allocate(self, w: torch.Tensor, tokens: list[int]) -> list[int]:
        """Tokens per site: the global top ``ratio`` of all token weights (adaptive), else ratio * N each."""
        capable = [s for s, n in enumerate(tokens) if n > 1]
        if not self.adaptive:
            return [int(self.ratio * n) if n > 1 else 0 for n in tokens]
        flat = torch.cat([w[s, :tokens[s]] for s in capable])
        k = int(self.ratio * flat.numel())
        counts = [0] * len(tokens)
        if k == 0:
            return counts
        cut = flat.topk(k).values[-1]
        for s in capable:
            counts[s] = int((w[s, :tokens[s]] >= cut).sum())
        return counts
