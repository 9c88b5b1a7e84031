"""MeanCache: from instantaneous to average velocity (Gao et al., arXiv 2601.19961, ICLR'26).

Training-free, step-level. A skipped step does not reuse the last velocity (instantaneous, it swings from
step to step) but estimates the *average* velocity over the step's interval with MeanFlow's identity
u(t, s) = v(t) + (s - t) d/dt u, the derivative (a JVP) taken from the last K steps' history:

    D    = t_i - t_{i-K}                                  the span's length (K steps back)
    u_K  = sum_{k=i-K}^{i-1} (t_{k+1} - t_k) v_k / D        the span's average velocity (for an Euler sampler,
                                                         (x_i - x_{i-K}) / D, as the reference computes it)
    jvp  = (v_{i-K} - u_K) / D
    v_i  = v_{i-1} - jvp (t_{i+1} - t_i)

so every skipped value is a fixed linear combination of the last K values, its weights set by the step
coordinates (``mean_velocity_weights``); K = 1 is plain reuse. The history holds every step's value, real
or estimated (the reference logs both). Here the value is the one feature the engine caches for the whole
model, the input of the final layer (as FreqCa's and L2P's; the reference's is the CFG-combined velocity):
the combination is linear, so it commutes with CFG's, but not with the final layer's norm. Full steps run
every block and keep the feature; skipped steps skip every block.

Schedule: by default TaylorSeer's counter (``warmup``, then every ``interval``) with one span ``span`` for
every skipped step; or explicit full steps (``full="0/1/3/7/..."``) with a span per gap between consecutive
full steps (``spans="0/2/1/..."``, 0 for gaps with nothing skipped), as the reference's schedules are written
(its Peak-Suppressed Shortest Path output; presets "qwen-image-10", "-17", "-25", 50 steps). The reference
measures t in sigmas; ``units="step"`` (default) uses step indices, the same on evenly spaced schedules (the
weights do not change under t -> a t + b); ``units="timestep"`` uses the model's timestep values, with the
current step's own length taken as the last one (a model hook does not see the sampler's next timestep).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from ..plan import SKIP, Action, Plan, SharedHolds, Site, StepContext, counter_full

UNITS = ("step", "timestep")
MAX_SPAN = 6  # the reference's longest span (its rules v_diff_mean_jvp1_s2 .. _s6)
_KEPT_OFF = Plan(Action.FULL, keep=False)


def mean_velocity_weights(times: list[float]) -> list[float]:
    """Weights of v_{i-K} .. v_{i-1} in the estimate of step i, from the K + 2 coordinates t_{i-K} .. t_{i+1}."""
    k = len(times) - 2
    if k < 1:
        raise ValueError("mean_velocity_weights needs t_{i-K} .. t_{i+1}: at least 3 coordinates")
    gaps = [times[j + 1] - times[j] for j in range(k)]
    span, step = times[k] - times[0], times[k + 1] - times[k]
    if span == 0:
        raise ValueError("mean_velocity_weights: the span has zero length")
    w = [step * g / span**2 for g in gaps]   # - jvp * step, the average's part
    w[0] -= step / span                      # - jvp * step, v_{i-K}'s part
    w[-1] += 1.0                             # v_{i-1}
    return w


def _steps(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split("/") if s.strip()) if text else ()
    except ValueError:
        raise ValueError(f"MeanCache.{what} must be integers joined by '/', e.g. '0/1/3/7', got {text!r}") from None


@dataclass
class MeanCache:
    interval: int = 5      # counter schedule: one full step every N steps after the warm-up (4.1x FLOPs at 50
    #                        steps, near the paper's 4.12x FLUX point)
    warmup: int = 3        # counter schedule: leading full steps (the reference's schedules all start 0, 1, ...)
    span: int = 2          # K: steps back the JVP spans, for every skipped step (1: plain reuse). Measured on
    #                        dit256 (8 seeds, 50 steps, N 5): K 1 31.1 dB, 2 34.6, 3 34.6, 4 34.3; 2 is the
    #                        shortest of the best (and the reference's most used JVP span)
    full: str = ""         # explicit full steps joined by '/' (replaces interval and warmup), e.g. a preset's
    spans: str = ""        # with `full`: K per gap between consecutive full steps, joined by '/' (0: none skipped)
    units: str = "step"    # coordinate t: "step" (step index) or "timestep" (the model's timestep value)

    name: ClassVar[str] = "meancache"
    ranges: ClassVar[str] = (f"interval >= 1, warmup >= 1, span 1..{MAX_SPAN}; or full='0/..'(/-joined steps, "
                             "starting at 0) with spans (one per gap); units step | timestep")

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def preset(cls, name: str, **overrides) -> MeanCache:
        """The reference's Qwen-Image schedules for 50 steps: 'qwen-image-10', '-17' or '-25' full steps."""
        try:
            return replace(PRESETS[name], **overrides)
        except KeyError:
            raise KeyError(f"no MeanCache preset {name!r}; known: {sorted(PRESETS)}") from None

    def validate(self) -> None:
        for name in ("interval", "warmup", "span"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"MeanCache.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.span > MAX_SPAN:
            raise ValueError(f"MeanCache.span must be at most {MAX_SPAN} (the reference's longest), got {self.span}")
        if self.units not in UNITS:
            raise ValueError(f"MeanCache.units must be one of {UNITS}, got {self.units!r}")
        full, spans = _steps(self.full, "full"), _steps(self.spans, "spans")
        if self.spans and not self.full:
            raise ValueError("MeanCache.spans needs full (one span per gap between its full steps)")
        if full:
            if full[0] != 0 or list(full) != sorted(set(full)):
                raise ValueError(f"MeanCache.full must be increasing step indices starting at 0, got {self.full!r}")
            if spans and len(spans) != len(full) - 1 and len(spans) != len(full):
                raise ValueError(f"MeanCache.spans needs one span per gap between full steps ({len(full) - 1}, or "
                                 f"{len(full)} with the gap after the last), got {len(spans)}")
            if any(not 0 <= s <= MAX_SPAN for s in spans):
                raise ValueError(f"MeanCache.spans must be in 0..{MAX_SPAN}, got {self.spans!r}")

    def full_steps(self, num_steps: int) -> list[int]:
        full = _steps(self.full, "full")
        if full:
            return [s for s in full if s < num_steps]
        return [s for s in range(num_steps) if counter_full(s, self.warmup, self.interval)]

    def holds_shared(self) -> SharedHolds:
        # the last MAX_SPAN values of the final layer's input, nothing per site (memory.predict counts the history
        # by full steps taken, so a run with fewer than MAX_SPAN full steps is under-predicted)
        return SharedHolds(final=MAX_SPAN - 1)

    def span_at(self, step: int) -> int:
        """K for a skipped ``step``: its gap's span (the last gap's span past the list), else ``span``."""
        full, spans = _steps(self.full, "full"), _steps(self.spans, "spans")
        if not spans:
            return self.span
        gap = min(bisect.bisect_right(full, step) - 1, len(spans) - 1)
        return max(spans[gap], 1)

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        key = ("meancache", ctx.branch)
        if ctx.step == 0:  # a generation's (or a branch's) first call: a new history
            store.shared[key] = {"history": [], "times": [], "seen": 0, "full": True}
        state = store.shared[key]
        # a branch whose history missed steps (it started mid-run) computes every step
        full = ctx.step in self.full_steps(ctx.num_steps) or state["seen"] != ctx.step
        state["full"] = full
        return [_KEPT_OFF if full else SKIP] * len(sites)

    def final(self, ctx: StepContext, store, x: torch.Tensor) -> torch.Tensor | None:
        """x: (B, N, D) the blocks' output on the image tokens. Full: keep it; skipped: the estimate."""
        state = store.shared[("meancache", ctx.branch)]
        history, times = state["history"], state["times"]
        now = float(ctx.step) if self.units == "step" else float(ctx.timestep)
        if state["full"]:
            if state["seen"] == ctx.step:
                self._keep(state, x.detach(), now)
            return None
        k = min(self.span_at(ctx.step), len(history))
        nxt = now + (now - times[-1]) if self.units == "timestep" else now + 1.0
        weights = mean_velocity_weights(times[-k:] + [now, nxt])              # t_{i-K} .. t_{i+1}
        est = torch.zeros_like(history[-1], dtype=torch.float32)
        for w, v in zip(weights, history[-k:]):
            est.add_(v.float(), alpha=w)                                      # (B, N, D)
        est = est.to(x.dtype)
        self._keep(state, est, now)
        return est

    @staticmethod
    def _keep(state: dict, value: torch.Tensor, t: float) -> None:
        """Append a step's value and coordinate; the longest span needs the last MAX_SPAN of each."""
        state["history"].append(value)
        state["times"].append(t)
        state["seen"] += 1
        del state["history"][:-MAX_SPAN], state["times"][:-MAX_SPAN]


def _reference(full: tuple[int, ...], rules: tuple[int, ...]) -> MeanCache:
    return MeanCache(full="/".join(map(str, full)), spans="/".join(map(str, rules)))


# The reference's Qwen-Image schedules (MeanCache4Qwen-Image/Mc_qwenimage.py, 50 steps): full steps and the
# span per gap (its rules: 'chain' = 0, nothing skipped; 'v_diff_mean' = 1, plain reuse; '_jvp1_sN' = N).
PRESETS: dict[str, MeanCache] = {
    "qwen-image-25": _reference((*range(17), 24, 32, 40, 43, 45, 47, 48, 49), (0,) * 16 + (1, 1, 1, 5, 5, 5, 0, 0)),
    "qwen-image-17": _reference((*range(9), 10, 17, 24, 31, 38, 45, 48, 49), (0,) * 8 + (2, 1, 1, 1, 1, 1, 4, 0)),
    "qwen-image-10": _reference((0, 1, 3, 7, 14, 21, 28, 35, 42, 49), (0, 2, 1, 1, 1, 1, 1, 1, 4)),
}
