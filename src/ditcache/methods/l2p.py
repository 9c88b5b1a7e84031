"""L2P: a learned linear predictor (Shen et al., "Beyond Fixed Formulas", arXiv 2604.26365, CVPR'26).

Forecasting caches (reuse, Taylor, Hermite) all predict a skipped step's feature as a fixed linear
combination of cached ones; L2P learns the combination instead. One feature for the whole model, as the
reference caches one (the model's output there; here the input of the final layer, whose
timestep-modulated norm and projection still run every step, as FreqCa's CRF): on a full step every block
runs and the feature is kept; on a cached step every block is skipped and the feature is predicted from
all earlier steps' features, real or predicted, ``x_hat(s) = sum_{j < s} W[s - 1, j] x(j)``, with one
weight per (step, earlier step), the same for every token and channel. W is lower-triangular, (T, T), an
artifact trained for one model, sampler and step count (``ditcache train l2p``, ``learn/l2p.py``).

Full steps: by default TaylorSeer's counter (``warmup`` steps, then every ``interval``);
``schedule="reference"`` takes the reference's hand-tuned list for ``interval`` (FLUX, 50 steps: dense early,
sparse late; interval 5 computes 11 steps, its 4.55x FLOPs point), spread over other step counts in
proportion. The counter was better at equal FLOPs on our defaults (``schedule`` below; docs/methods_l2p_meancache.md).
The history holds one feature per step taken (T tensors of the final layer's input, per CFG branch), as
the reference's does; predicting is an elementwise weighted sum (not counted as FLOPs, like Taylor's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..plan import SKIP, Action, Plan, Site, StepContext, counter_full
from .artifacts import load_artifact

# The reference's full steps per interval for 50 steps (src/flux/model.py, FULL_STEP_SCHEDULES).
REFERENCE_SCHEDULES: dict[int, tuple[int, ...]] = {
    5: (0, 1, 2, 4, 6, 9, 14, 23, 30, 37, 44),
    6: (0, 1, 2, 4, 7, 14, 23, 31, 38, 45),
    7: (0, 1, 2, 4, 9, 17, 26, 35, 43),
    8: (0, 1, 2, 4, 10, 20, 31, 41),
    10: (0, 1, 2, 4, 12, 24, 38),
    16: (0, 1, 2, 4, 16, 32),
}
SCHEDULES = ("reference", "counter")
_KEPT_OFF = Plan(Action.FULL, keep=False)


def reference_steps(interval: int, num_steps: int) -> list[int]:
    """The reference's full steps for ``interval`` at 50 steps, placed at the same share of a ``num_steps``
    run (step s -> round(s (T - 1) / 49)); the first three stay 0, 1, 2 when the run has them."""
    base = REFERENCE_SCHEDULES[interval]
    scaled = {min(s, num_steps - 1) if s < 3 else round(s * (num_steps - 1) / 49) for s in base}
    return sorted(scaled)


@dataclass
class L2P:
    artifact: str = "dit"        # a predictor file, or the name of a shipped default ('dit', 'flux', ...)
    interval: int = 5            # counter: one full step every N steps after the warm-up; with schedule=
    #                              "reference", the reference's list for N (5, 6, 7, 8, 10, 16; 5: its 4.55x point)
    schedule: str = "counter"    # "counter": TaylorSeer's counter; "reference": the reference's FLUX list. Measured
    #                              on dit256 (8 seeds, 50 steps): counter N 7 31.0 dB vs reference N 7 28.3 dB, both
    #                              5.48x FLOPs; N 5: counter 35.2 dB at 4.13x, reference 30.5 dB at 4.50x
    warmup: int = 3              # counter: leading full steps (the reference's lists begin 0, 1, 2)

    name: ClassVar[str] = "l2p"
    ranges: ClassVar[str] = ("a predictor for this model, sampler and step count; schedule reference (interval "
                             "5, 6, 7, 8, 10, 16) or counter (interval >= 1, warmup >= 1)")

    def __post_init__(self) -> None:
        self.validate()
        self._weight = None

    def validate(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"L2P.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.schedule == "reference" and self.interval not in REFERENCE_SCHEDULES:
            raise ValueError(f"L2P.interval must be one of {sorted(REFERENCE_SCHEDULES)} with schedule='reference' "
                             f"(the reference's lists), got {self.interval!r}; schedule='counter' takes any")
        for name in ("interval", "warmup"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"L2P.{name} must be an int >= 1, got {getattr(self, name)!r}")

    def bind(self, model, sites: list[Site]) -> None:
        art = load_artifact(self.artifact, "l2p")
        art.check_model(model)
        weight = art.tensors["weight"]
        if weight.ndim != 2 or weight.shape[0] != weight.shape[1] or weight.shape[0] != len(art.timesteps):
            raise ValueError(f"L2P predictor {self.artifact!r} is damaged: weight {tuple(weight.shape)} for "
                             f"{len(art.timesteps)} steps")
        self._art, self._weight = art, weight.float().tril()

    def full_steps(self, num_steps: int) -> list[int]:
        if self.schedule == "reference":
            return reference_steps(self.interval, num_steps)
        return [s for s in range(num_steps) if counter_full(s, self.warmup, self.interval)]

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        if self._weight is None:
            raise RuntimeError("L2P needs its predictor: apply it through ditcache.cached/apply (they bind it)")
        self._art.check_step(ctx.step, ctx.num_steps, ctx.timestep)
        key = ("l2p", ctx.branch)
        if ctx.step == 0:  # a generation's (or a branch's) first call: a new history
            store.shared[key] = {"history": [], "full": True}
        state = store.shared[key]
        # a branch whose history missed steps (it started mid-run) computes every step
        full = ctx.step in self.full_steps(ctx.num_steps) or len(state["history"]) != ctx.step
        state["full"] = full
        return [_KEPT_OFF if full else SKIP] * len(sites)

    def final(self, ctx: StepContext, store, x: torch.Tensor) -> torch.Tensor | None:
        """x: (B, N, D) the blocks' output on the image tokens. Full: keep it; cached: the predicted one."""
        state = store.shared[("l2p", ctx.branch)]
        history = state["history"]
        if state["full"]:
            if len(history) == ctx.step:
                history.append(x.detach().float())                            # (B, N, D) float32
            return None
        w = self._weight[ctx.step - 1, : ctx.step].tolist()                   # row s - 1 predicts step s
        pred = torch.zeros_like(history[0])
        for wj, xj in zip(w, history):
            if wj != 0.0:
                pred.add_(xj, alpha=wj)                                       # (B, N, D)
        history.append(pred)
        return pred.to(x.dtype)
