"""What a run measures: one ``CallRecord`` per model call, ``RunStats`` over them, and the FLOP counter.

Pure data and pure functions of it: nothing here hooks a model. ``Run._call`` fills the records; the
FLOP counter is torch's, taught the CPU fused attention kernel.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ..plan import Action


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cdist_flop(x1_shape, x2_shape, *args, out_shape=None, **kwargs) -> int:
    """torch.cdist (ClusCa's reference L1 k-means): per pair of rows and per dimension one difference, one
    absolute value (or square) and one accumulation: 3 * B * N * K * D. torch counts no formula for it."""
    *batch, n, d = x1_shape
    k = x2_shape[-2]
    b = 1
    for s in batch:
        b *= s
    return 3 * b * n * k * d


# torch's counter has no formula for the CPU fused attention kernel (without this it counts 0), nor for cdist.
_EXTRA_FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
                        torch.ops.aten._cdist_forward: _cdist_flop}


def flop_counter() -> FlopCounterMode:
    """torch's FLOP counter, also counting CPU fused attention and cdist. Like torch's, it counts matrix
    products, attention and distances, not elementwise work (norms, softmax, adds): the convention every
    FLOP figure in ditcache follows, for the model and for planning alike."""
    return FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS)


@dataclass
class CallRecord:
    """One model call: a step, or another CFG branch of it."""

    generation: int             # 0-based index of the generation (pipeline call) in this run
    step: int
    branch: int
    timestep: float
    progress: float
    actions: list[str]          # per site: Action value
    tokens: list[int]           # per site: tokens computed by PARTIAL (0 otherwise)
    flops: int                  # FLOPs executed by the whole call (torch's counter, memoised per plan shape),
    #                             less the verification share counted in plan_flops
    site_flops: list[int]       # per site
    wall_s: float               # wall-clock of the call (includes counting on the first call of a plan shape)
    plan_s: float               # host-side planning time of the method (scores, k-means), inside wall_s
    cache_bytes: int            # bytes held by the store after the call
    plan_flops: int = 0         # FLOPs of the method's planning for this call: its plan() (token scores, k-means;
    #                             counted every call, outside the model call) plus the sites computed only to check
    #                             a forecast (SpeCa's verification, inside the call, memoised with it)


@dataclass
class RunStats:
    sites: list[str]
    records: list[CallRecord] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many site calls were computed / reused / forecast / partial / skipped."""
        c = Counter(a for r in self.records for a in r.actions)
        return {a.value: c.get(a.value, 0) for a in Action}

    def full_steps(self) -> int:
        """Steps (branch 0) in which every site was computed."""
        return sum(1 for r in self.records if r.branch == 0 and all(a == "full" for a in r.actions))

    def steps(self) -> int:
        """Denoising steps run, over all generations."""
        return sum(1 for r in self.records if r.branch == 0)

    def generations(self) -> list[RunStats]:
        """The stats of each generation (pipeline call) of the run, in order."""
        out: dict[int, RunStats] = {}
        for r in self.records:
            out.setdefault(r.generation, RunStats(self.sites)).records.append(r)
        return [out[g] for g in sorted(out)]

    @property
    def flops(self) -> int:
        """Every FLOP the run executed: the model calls and the planning (``plan_flops``), so FLOP ratios
        count planning too."""
        return sum(r.flops + r.plan_flops for r in self.records)

    @property
    def plan_flops(self) -> int:
        """FLOPs of planning alone (token scores, k-means, verification), included in ``flops``."""
        return sum(r.plan_flops for r in self.records)

    @property
    def wall_s(self) -> float:
        return sum(r.wall_s for r in self.records)

    @property
    def peak_cache_bytes(self) -> int:
        return max((r.cache_bytes for r in self.records), default=0)

    def summary(self) -> str:
        """One line per generation: steps, what the site calls did, FLOPs and peak cache memory."""
        gens = self.generations()
        if not gens:
            return "no model calls recorded"
        lines = []
        for i, g in enumerate(gens):
            c = g.counts()
            head = f"generation {i + 1}: " if len(gens) > 1 else ""
            lines.append(
                f"{head}{g.steps()} steps ({g.full_steps()} fully computed), {len(self.sites)} sites: "
                + ", ".join(f"{k} {v}" for k, v in c.items() if v)
                + f"; {g.flops / 1e9:.2f} GFLOPs"
                + (f" (planning {g.plan_flops / 1e9:.3f})" if g.plan_flops else "")
                + f"; peak cache {g.peak_cache_bytes / 2**20:.1f} MiB"
            )
        return "\n".join(lines)
