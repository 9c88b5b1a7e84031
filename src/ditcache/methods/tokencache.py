"""TokenCache (Lou et al., arXiv 2409.18523): learned token importance and a two-phase schedule.

A trained predictor gives each (step, site, token) an importance that does not depend on the input.
Full steps follow the Two-Phase Round-Robin schedule: every ``k1`` steps before progress ``boundary``
and every ``k2`` steps after it (early, noisy steps are more alike, so the early phase is sparser; the
paper's talk summary). Which order is ahead differs by model in one run (benchmarks/learned_choices.py,
20 images, equal FLOPs, no interval, so neither lead is shown): on the `dit` default the paper's (k1 4, k2 2:
40.0 dB vs 38.1 reversed, 1.63x), on `flux` the reverse (k1 2, k2 4: 42.7 dB vs 36.8, 1.67x); the defaults
follow the paper.
On the steps between, ``ratio`` bounds the compute of every site together
(each site counted by its FLOPs, measured when the predictor was trained): sites without a token-subset
path (joint attention, whole blocks) are computed iff their learned weight exceeds ``site_threshold``
and pay their FLOPs from the budget; the rest goes to the tokens with the highest predicted importance,
ranked across blocks (``adaptive``: blocks that matter get more tokens), or ``ratio`` of each block's
tokens otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..plan import FULL, REUSE, Action, Holds, Plan, Site, StepContext
from .artifacts import load_artifact


@dataclass
class TokenCache:
    artifact: str = "dit"     # a predictor file, or the name of a shipped default ('dit' | 'flux')
    ratio: float = 0.3        # share of tokens recomputed on cache steps (the predictor's training target)
    k1: int = 4               # full-step interval in the early phase (chosen by measurement; resolve note)
    k2: int = 2               # full-step interval in the late phase
    boundary: float = 0.5     # progress where the late phase starts
    adaptive: bool = True     # allocate tokens across blocks by the global importance ranking
    site_threshold: float = 0.5  # a site with no token-subset path is computed on a cache step iff its
    #                           learned weight exceeds this (0.5: the blend weight at which fresh outweighs cache;
    #                           on flux 0.7 with k1 2, k2 6, ratio 0.1 gives 2.27x FLOPs at 38.9 dB, BENCHMARKS.md)

    name: ClassVar[str] = "tokencache"
    ranges: ClassVar[str] = ("a predictor for this model, sampler and step count; ratio 0..1, k1, k2 >= 1, "
                             "boundary 0..1, site_threshold 0..1")

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
        if not 0.0 <= self.site_threshold <= 1.0:
            raise ValueError(f"TokenCache.site_threshold must be in [0, 1], got {self.site_threshold}")

    def bind(self, model, sites: list[Site]) -> None:
        art = load_artifact(self.artifact, "tokencache")
        art.check_model(model)
        if art.tensors["tokens"].numel() != len(sites):
            raise ValueError(f"predictor has {art.tensors['tokens'].numel()} sites, the model {len(sites)}")
        self._art = art

    def full_steps(self, num_steps: int) -> list[int]:
        return [s for s in range(num_steps) if self.full_step(s, num_steps)]

    def holds(self, site: Site) -> Holds:
        return Holds(output=True, refreshed=site.partial is not None)  # partial steps write back

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
        whole, counts = self._allocate(w, tokens)
        plans = []
        for site, n, k in zip(sites, tokens, counts):
            if n == 1:
                plans.append(FULL if whole[site.index] else REUSE)
            elif k == 0:
                plans.append(REUSE)
            else:
                idx = w[site.index, :n].topk(k).indices                      # (k,) the same for every sample
                rows = store.entries[(ctx.branch, site.index)].out[0]       # (B, N, D): its rows and device
                idx = idx.to(rows.device).expand(rows.shape[0], -1)         # (B, k)
                if ctx.shards.active:  # context parallelism: this rank's rows of the whole sequence's choice
                    idx, valid = ctx.shards.localize(idx, rows.shape[1], same=site.kind != "mlp")
                    plans.append(Plan(Action.PARTIAL, tokens=idx, valid=valid))
                    continue
                plans.append(Plan(Action.PARTIAL, tokens=idx))
        return plans

    def _allocate(self, w: torch.Tensor, tokens: list[int]) -> tuple[list[bool], list[int]]:
        """(whole sites computed, tokens per site) within the budget ``ratio * sum of site FLOPs``."""
        cost = self._art.tensors.get("cost")
        cost = torch.ones(len(tokens), dtype=torch.float64) if cost is None else cost.double()   # (S,)
        budget = self.ratio * float(cost.sum())
        whole = [n == 1 and bool(w[s, 0] > self.site_threshold) for s, n in enumerate(tokens)]
        budget -= sum(float(cost[s]) for s, c in enumerate(whole) if c)
        capable = [s for s, n in enumerate(tokens) if n > 1]
        counts = [0] * len(tokens)
        if not capable or budget <= 0:
            return whole, counts
        if not self.adaptive:  # the same share of every block's tokens, from what the whole sites left
            share = budget / float(sum(cost[s] for s in capable))
            return whole, [int(min(share, 1.0) * n) if s in capable else 0 for s, n in enumerate(tokens)]
        weights = torch.cat([w[s, :tokens[s]] for s in capable])                    # every token, ranked together
        owner = torch.cat([torch.full((tokens[s],), s) for s in capable])
        unit = torch.cat([torch.full((tokens[s],), float(cost[s]) / tokens[s]) for s in capable])  # FLOPs per token
        order = weights.argsort(descending=True)
        taken = order[unit[order].cumsum(0) <= budget]                               # best tokens that fit
        for s in owner[taken].tolist():
            counts[s] += 1
        return whole, counts
