"""ToCa: token-wise feature caching (Zou et al., arXiv 2410.05317, ICLR'25).

Full steps compute everything and keep the attention inputs. Between them, each partially computed
branch (MLP; cross-attention where the model has it) recomputes only its ``K = floor(r * N)`` most
important tokens and reuses its cached output for the rest, writing the fresh rows into the cache;
self-attention is reused whole. Importance = attention the token received at the last full step
(or, with cross-attention, 1 + the entropy of its text attention), L2-normalised, plus
``staleness_weight * (steps since the token was last computed) / interval``, times ``1 + bonus`` for
the top token of each ``cell x cell`` patch of the token grid. The fresh ratio is
``r = clamp(fresh_ratio * f_step(p) * f_layer(l) * f_module(kind), 0, 1)`` with linear curves in
progress p and normalised layer depth l, and the full interval is ``round(interval / (a + b p))``.

Scores are computed on a separate path from the kept inputs of FULL steps, so the model's attention
keeps its fused kernel. Differences from the reference code, on purpose: full steps are placed by a
counter (next full = this full + interval(p)); the reference's DiT code tests ``s % N_t == 0`` on its
count-down index s with N_t recomputed at each full step from p = 1 - s/T (``schedule="modulo"``), so a
gap follows the residue of s rather than N_t: with the dit preset on 50 steps its full steps 4 and 5 are
back to back and its gaps run 4, 1, 4, 4, 4, 2, 3 where the counter's are 5, 4, 4, 4, 3, 3 (both
computing about as many steps; the reference also recomputes N_t per layer within a full step, which lets
later layers of a step disagree with its first: not copied). An empty token choice (r = 0) is a plain
reuse; grids not divisible by the cell get no bonus past the last whole cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch

from .. import tokens as T
from ..adapters import block_spec, model_spec
from ..forecast import Taylor, check_forecaster
from ..plan import Action, Holds, Plan, Site, StepContext, check_order


@dataclass
class ToCa:
    interval: int = 3                 # N: nominal full-step interval (authors' DiT DDIM-50 setting)
    interval_curve: tuple[float, float] = (0.6, 0.8)  # (a, b): interval(p) = round(N / (a + b p)); DiT's
    #                                   w = 0.4 gives 1 / (1 - w + 2 w p): sparse full steps early, dense late
    sensitive: tuple[float, float] | None = (0.6, 0.8)  # progress window forced to interval 2 (DiT code:
    #                                   steps s in [0.2T, 0.4T), counted down, "extremely sensitive")
    fresh_ratio: float = 0.07         # r0: base share of tokens recomputed (authors' DiT DDIM-50 value)
    step_curve: tuple[float, float] = (-1.0, 4.0)  # f_step = a + b p; DiT DDIM-50: 3 - 4 s/T = 4p - 1
    layer_curve: tuple[float, float] = (0.8, 0.4)  # f_layer = a + b l, l = layer / (L - 1); DiT DDIM-50
    layer_span: float = 1.0           # l runs over [0, layer_span] along the blocks of one class (DiT, PixArt:
    #                                   l / 27 over 28 blocks = 1; Flux's code uses l / 27 over 19 double blocks)
    module_factor: tuple[tuple[str, float], ...] = (("attn", 0.0), ("cross_attn", 0.6), ("mlp", 2.5))
    #                                   f_module per branch kind: DiT reuses self-attention (0), MLP 2.5;
    #                                   "temporal:<kind>" keys set Latte's temporal blocks apart
    staleness_weight: float = 0.25    # lambda3: weight of tokens' staleness in the score (authors' value)
    bonus: float = 0.6                # beta: spatial-uniformity bonus (DiT 0.6, PixArt 0.4)
    cell: int = 2                     # g: the bonus picks one token per g x g patch (DiT 2, PixArt 4)
    score: str = "attention"          # "attention" (attention received / cross-attention entropy),
    #                                   "key_norm" (norm of each token's key: no attention map needed), or
    #                                   "random" (DuCa's choice: needs nothing from the attention module)
    seed: int = 0                     # random scores only
    score_queries: int | None = 64    # attention scores from every (N // 64)-th query row only (the column
    #                                   sums scaled back): bounds the map's cost as tokens grow; None: all rows
    reuse_keys: bool = True           # score from the raw keys the full step's self-attention computed (kept:
    #                                   one (B, N, D) per attention site) instead of projecting them again
    #                                   (about half of the scoring time at 256 tokens, width 128)
    tie_cfg: bool = False             # [uncond; cond] halves take the same tokens (PixArt's code does;
    #                                   DiT's does not, and per-sample choice is the default here)
    warmup: int = 1                   # leading full steps (Flux code: 3)
    schedule: str = "counter"         # "counter": next full = this full + interval(p); "modulo": the reference
    #                                   DiT code's s % N_t == 0 (module doc: why the counter is the default)
    order: int = 0                    # the base the fresh tokens go into between full steps: 0 reuses the
    #                                   last output (ToCa); >= 1 forecasts it with `forecast`
    forecast: object = field(default_factory=Taylor)  # forecaster of the base when order >= 1
    sharding: str = "global"          # under context parallelism: "global" takes the top k of the whole sequence's
    #                                   scores (gathered), so each rank refreshes exactly the single-process tokens
    #                                   of its shard (padded to one count per rank at attention sites, whose
    #                                   collectives need it); "shard" the top ceil(k / ranks) of each rank's own
    #                                   tokens (README, context parallelism: both measured)
    name: ClassVar[str] = "toca"
    ranges: ClassVar[str] = ("interval >= 1, fresh_ratio 0..1, order 0..4, warmup >= 0, cell >= 1, bonus >= 0, "
                             "score attention | key_norm | random")
    SCORES: ClassVar[tuple[str, ...]] = ("attention", "key_norm", "random")
    SCHEDULES: ClassVar[tuple[str, ...]] = ("counter", "modulo")
    SHARDINGS: ClassVar[tuple[str, ...]] = ("global", "shard")

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def preset(cls, model: str, **overrides) -> ToCa:
        """The authors' settings for 'dit' (DDIM-50), 'pixart' or 'flux', with optional overrides."""
        try:
            return replace(PRESETS[model], **overrides)
        except KeyError:
            raise KeyError(f"no ToCa preset {model!r}; known: {sorted(PRESETS)}") from None

    def validate(self) -> None:
        if not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"ToCa.interval must be an int >= 1, got {self.interval!r}")
        check_order("ToCa", self.order)
        check_forecaster("ToCa", self.forecast)
        if not 0.0 <= self.fresh_ratio <= 1.0:
            raise ValueError(f"ToCa.fresh_ratio (r0, the base share of tokens recomputed) must be in [0, 1], "
                             f"got {self.fresh_ratio}")
        if self.score not in self.SCORES:
            raise ValueError(f"ToCa.score must be one of {self.SCORES}, got {self.score!r}")
        if self.schedule not in self.SCHEDULES:
            raise ValueError(f"ToCa.schedule must be one of {self.SCHEDULES}, got {self.schedule!r}")
        if self.sharding not in self.SHARDINGS:
            raise ValueError(f"ToCa.sharding must be one of {self.SHARDINGS}, got {self.sharding!r}")
        if self.cell < 1 or self.bonus < 0 or self.staleness_weight < 0 or self.warmup < 0 or self.layer_span < 0:
            raise ValueError("ToCa.cell must be >= 1 and bonus, staleness_weight, warmup, layer_span >= 0")
        unknown = {k.removeprefix("temporal:") for k, _ in self.module_factor} - {"attn", "cross_attn", "mlp", "block"}
        if unknown:
            raise ValueError(f"ToCa.module_factor has unknown branch kinds {sorted(unknown)}")

    def bind(self, model, sites: list[Site]) -> None:
        """Before any step: every block whose tokens ToCa refreshes must have the attention projections
        its score reads (to_q / to_k), or the score must be one that needs none; and at least one branch
        must have a token path ToCa refreshes, or every cache step would reuse everything (that is FORA)."""
        if not any(s.partial and self.module_factor_of(s.kind, s.role) > 0 for s in sites):
            raise ValueError(
                f"ToCa refreshes tokens of branches with a token-subset path, and {type(model).__name__} has none "
                f"among the kinds it refreshes ({dict(self.module_factor)}): it would reuse every branch "
                f"between full steps; use FORA(interval={self.interval}) for that")
        if self.score == "random":
            return
        reason = model_spec(model).no_attention_score
        if reason and self.score == "attention":
            raise ValueError(f"ToCa(score='attention') cannot score {type(model).__name__}'s tokens: {reason}. Use "
                             "ToCa(score='key_norm') or ToCa(score='random') (DuCa's attention-free choice)")
        for site in sites:
            if not site.partial or self.module_factor_of(site.kind, site.role) <= 0:
                continue
            attn = [s for s in sites if s.layer == site.layer and s.kind in ("attn", "cross_attn")]
            if not any(hasattr(s.module, "to_q") and hasattr(s.module, "to_k") for s in attn):
                raise ValueError(
                    f"ToCa(score={self.score!r}) scores tokens from the attention projections (to_q, to_k) of "
                    f"each block it refreshes, and block {type(site.block).__name__} ({site.name}) has none: "
                    "use ToCa(score='random') (DuCa's attention-free choice)")

    # ------------------------------------------------------------------ schedule
    def step_interval(self, progress: float) -> int:
        if self.sensitive is not None and self.sensitive[0] <= progress < self.sensitive[1]:
            return 2
        a, b = self.interval_curve
        return max(1, round(self.interval / max(a + b * progress, 1e-6)))

    def full_step(self, step: int, num_steps: int, progress: float, schedule: dict) -> bool:
        """Whether ``step`` is full, updating ``schedule`` (the interval in force) when it is. Counter: the
        warm-up, then every interval(p) steps after the last full one, and the last step. Modulo (the
        reference's DiT rule): the first step and every step whose count-down index s = T - 1 - step is a
        multiple of the interval set at the last full step, at the reference's p = 1 - s / T (so the last
        step, s = 0, is always full)."""
        if self.schedule == "modulo":
            s = num_steps - 1 - step
            if step >= self.warmup and step > 0 and s % schedule["interval"] != 0:
                return False
            schedule["interval"] = self.step_interval(1 - s / num_steps)
            return True
        if step < self.warmup or step >= schedule["next_full"] or step == num_steps - 1:
            schedule["next_full"] = step + self.step_interval(progress)
            return True
        return False

    def module_factor_of(self, kind: str, role: str = "spatial") -> float:
        """f_module of a branch kind, the temporal-block entry first where there is one."""
        factors = dict(self.module_factor)
        return factors.get(f"{role}:{kind}", factors.get(kind, 0.0))

    def fresh_ratio_at(self, progress: float, layer: float, kind: str, role: str = "spatial") -> float:
        f_step = self.step_curve[0] + self.step_curve[1] * progress
        f_layer = self.layer_curve[0] + self.layer_curve[1] * layer
        f_module = self.module_factor_of(kind, role)
        return min(max(self.fresh_ratio * f_step * f_layer * f_module, 0.0), 1.0)

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        state = store.shared.setdefault(("toca", ctx.branch), {"scores": {}, "stale": {}})
        schedule = store.shared.setdefault("toca-schedule", {"next_full": 0})
        if ctx.branch == 0 and self.full_step(ctx.step, ctx.num_steps, ctx.progress, schedule):
            schedule["full_step"] = ctx.step
        if schedule.get("full_step") == ctx.step or ctx.step == 0:  # step 0: also a branch's first call
            state["scores"].clear()
            state["stale"].clear()
            return [Plan(Action.FULL, order=self.order, keep_input=s.kind in ("attn", "cross_attn"),
                         keep_keys=self.keeps_keys(s)) for s in sites]
        depth = store.shared.get("toca-depth")
        if depth is None:
            depth = store.shared["toca-depth"] = self.layer_positions(sites)
        between = Plan(Action.FORECAST, order=self.order) if self.order else Plan(Action.REUSE)
        shards = ctx.shards  # context parallelism: this rank holds n of the sequence's N tokens (SOLO: n = N)
        plans = []
        for site in sites:
            r = self.fresh_ratio_at(ctx.progress, depth[site.index], site.kind, site.role)
            key = (ctx.branch, site.index)
            if not site.partial or key not in store.entries or self.module_factor_of(site.kind, site.role) == 0:
                plans.append(between)  # never refreshed (or skipped by this branch: SLG's layers): no staleness
                continue
            base = store.entries[key].out[0]                                      # (B, n, D)
            n = base.shape[1]
            whole = shards.span(n)[1]                                             # N
            per_shard = shards.active and self.sharding == "shard"
            stale = state["stale"].setdefault(site.index, base.new_zeros(base.shape[0], n if per_shard else whole))
            k = int(r * whole)
            if k == 0:
                stale += 1  # nothing recomputed: every token grows staler
                plans.append(between)
                continue
            if self.score == "random":
                gen = state.setdefault("generator", torch.Generator().manual_seed(self.seed))
                score = torch.rand((base.shape[0], whole), generator=gen).to(base.device)  # (B, N)
            else:
                score = self._score(ctx, sites, site, store, state)              # (B, N)
            if per_shard:  # this rank's own tokens, the same count on every rank
                score, k = shards.shard_of(score, n), min(-(-k // shards.size), n)  # (B, n)
            score = score + self.staleness_weight * stale / self.interval
            if site.stream == "image" and ctx.grid is not None and score.shape[1] == math.prod(ctx.grid):
                score = T.spatial_bonus(score, ctx.grid, self.cell, self.bonus)
            idx = T.top_k(score, k, self.tie_cfg and score.shape[0] % 2 == 0)   # (B, k)
            stale += 1
            stale.scatter_(1, idx, 0.0)
            if shards.active and not per_shard:  # the whole sequence's choice, as this rank's rows
                idx, valid = shards.localize(idx, n, same=site.kind != "mlp")     # (B, m), (B, m)
                plans.append(Plan(Action.PARTIAL, tokens=idx, order=self.order, valid=valid))
                continue
            plans.append(Plan(Action.PARTIAL, tokens=idx, order=self.order))
        return plans

    def holds(self, site: Site) -> Holds:
        refreshed = bool(site.partial) and self.module_factor_of(site.kind, site.role) > 0
        return Holds(output=True, history=self.order, refreshed=refreshed, staleness=refreshed,
                     inputs=site.kind in ("attn", "cross_attn"), keys=self.keeps_keys(site),
                     scores=refreshed and self.score != "random")

    def keeps_keys(self, site: Site) -> bool:
        """Whether a full step keeps ``site``'s raw key projections: the self-attention's keys, as the full
        step computes them, so scoring projects only its sampled queries (the key projection of every
        token was most of the planning time). Random scores read no keys."""
        return self.reuse_keys and self.score != "random" and site.kind == "attn"

    def layer_positions(self, sites: list[Site]) -> list[float]:
        """Per site, the depth l of its block fed to the layer curve: the block's index among the
        blocks of its class over their count - 1, times ``layer_span`` (Flux's double stream: l / 27
        over 19 blocks spans 18 / 27 of the curve)."""
        blocks: dict[str, list[int]] = {}
        for s in sites:
            group = blocks.setdefault(type(s.block).__name__, [])
            if s.layer not in group:
                group.append(s.layer)
        out = []
        for s in sites:
            group = blocks[type(s.block).__name__]
            out.append(self.layer_span * group.index(s.layer) / max(len(group) - 1, 1))
        return out

    # ------------------------------------------------------------------ scores
    def _score(self, ctx: StepContext, sites: list[Site], site: Site, store, state: dict) -> torch.Tensor:
        """(B, N) L2-normalised importance for the tokens ``site`` sees, from its layer's last full step.
        Under context parallelism each rank scores its own tokens (attention received: from its queries, over
        every rank's keys, summed over the ranks), and the scores are gathered: (B, N) of the whole sequence,
        the same on every rank."""
        cache_key = (site.layer, site.stream)
        if cache_key not in state["scores"]:
            layer_sites = [s for s in sites if s.layer == site.layer]
            cross = next((s for s in layer_sites if s.kind == "cross_attn"), None)
            attn = next((s for s in layer_sites if s.kind == "attn"), None)
            if self.score == "attention" and cross is not None and site.stream == "image":
                args, kwargs = _kept(store, ctx.branch, cross)
                q, k = T.query_key(cross.module, _x(args, kwargs), _context(args, kwargs))
                mask = args[2] if len(args) > 2 else kwargs.get("attention_mask")   # padded text tokens
                scores = {"image": 1 + T.attention_entropy(q, k, mask)}
            elif attn is not None:
                args, kwargs = _kept(store, ctx.branch, attn)
                keys = store.entries[(ctx.branch, attn.index)].data.get("keys")   # raw to_k / add_k_proj outputs
                x, context = _x(args, kwargs), _context(args, kwargs)
                joint = attn.stream == "joint" and context is not None
                if self.score == "key_norm":
                    scores = {"image": T.key_norm(attn.module, x, keys)}
                    if joint:
                        scores["text"] = T.key_norm(attn.module, context, keys, "add_k_proj", "norm_added_k")
                else:
                    text_first = block_spec(attn.block).text_first
                    rotary = kwargs.get("image_rotary_emb")
                    if ctx.shards.active:
                        received = self._received_sharded(ctx.shards, attn.module, x, context if joint else None,
                                                          rotary, text_first, keys, kwargs.get("attention_mask"))
                    else:
                        stride = x.shape[1] // self.score_queries if self.score_queries else 1
                        q, k = T.query_key(attn.module, x, context if joint else None, rotary=rotary, joint=joint,
                                           text_first=text_first, query_stride=max(stride, 1), keys=keys)
                        received = T.attention_received(q, k, kwargs.get("attention_mask"), self.score_queries)
                    n_text = context.shape[1] if joint else 0
                    n_image = received.shape[1] - n_text
                    if text_first:
                        scores = {"image": received[:, n_text:], "text": received[:, :n_text]}
                    else:
                        scores = {"image": received[:, :n_image], "text": received[:, n_image:]}
            else:
                raise ValueError(f"ToCa needs an attention site in layer {site.layer} to score tokens")
            for stream, s in scores.items():
                state["scores"][(site.layer, stream)] = T.l2_normalise(ctx.shards.all_gather(s.float(), 1))
        return state["scores"][cache_key]

    def _received_sharded(self, shards, module, x: torch.Tensor, context: torch.Tensor | None, rotary, text_first: bool,
                          keys: dict | None, mask: torch.Tensor | None) -> torch.Tensor:
        """(B, s) attention received by this rank's s tokens (its joint sequence) under context parallelism,
        as one process scores them: the query rows it samples (every max(S // score_queries, 1)-th row of the
        whole joint sequence) that live on this rank attend to every rank's keys (gathered), and the
        rows' sums are added over the ranks (score scale aside, which l2_normalise removes)."""
        q, k = T.query_key(module, x, context, rotary=rotary, joint=context is not None, text_first=text_first,
                           keys=keys)                                           # (B, s, H, d) each
        image_at, n_image = shards.span(x.shape[1])
        text_at, n_text = shards.span(context.shape[1]) if context is not None else (0, 0)
        image = torch.arange(x.shape[1], device=x.device) + image_at            # whole-image positions
        text = torch.arange(q.shape[1] - x.shape[1], device=x.device) + text_at
        rows = torch.cat([text, image + n_text]) if text_first else torch.cat([image, text + n_image])  # (s,)
        stride = max((n_image + n_text) // self.score_queries, 1) if self.score_queries else 1
        n_keys = k.shape[1]
        k = shards.all_gather(k, 1)                                             # (B, S, H, d): every rank's keys
        mask = None if mask is None else shards.all_gather(mask, -1)
        received = T.attention_received(q[:, rows % stride == 0], k, mask)      # (B, S) from this rank's rows
        return shards.shard_of(shards.all_reduce(received), n_keys)             # (B, s) from every rank's rows


def _kept(store, branch: int, site: Site) -> tuple[tuple, dict]:
    try:
        return store.entries[(branch, site.index)].data["input"]
    except KeyError:
        raise RuntimeError(f"ToCa: no kept input for {site.name}; its last FULL step did not keep inputs") from None


def _x(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _context(args: tuple, kwargs: dict) -> torch.Tensor | None:
    return args[1] if len(args) > 1 else kwargs.get("encoder_hidden_states")


PRESETS: dict[str, ToCa] = {
    # DiT-XL/2, DDIM-50 (authors' ToCa-ddim50 schedule).
    "dit": ToCa(),
    # PixArt-alpha (authors' code): more compute early and in shallow layers; CFG halves tied.
    "pixart": ToCa(interval=3, interval_curve=(0.8, 0.4), sensitive=None, fresh_ratio=0.30,
                   step_curve=(1.9, -1.8), layer_curve=(1.6, -1.2),
                   module_factor=(("attn", 0.0), ("cross_attn", 0.6), ("mlp", 1.6)),
                   bonus=0.4, cell=4, tie_cfg=True),
    # FLUX.1-dev (later README): N = 4, steps 0..2 full, double-stream MLPs at 0.4, f_layer 1.5 - l;
    # single-stream blocks have no token-subset path here and are reused between full steps.
    "flux": ToCa(interval=4, interval_curve=(1.0, 0.0), sensitive=None, fresh_ratio=0.1,
                 step_curve=(1.0, 0.0), layer_curve=(1.5, -1.0), layer_span=18 / 27,
                 module_factor=(("attn", 0.0), ("cross_attn", 0.0), ("mlp", 0.4)), bonus=0.0, warmup=3),
    # OpenSora 1.2 (the authors' scripts/inference.py), on Latte's spatial and temporal blocks: r0 0.1,
    # flat curves, steps 0..2 full then every 3rd, self-attention reused, cross-attention at 1 - 0.67 * 1.5 < 0
    # (0 tokens: reused), MLPs at 1 + 0.33 * 1.5 = 1.495 (about 15% of tokens) in both block kinds, no spatial
    # bonus, CFG halves tied. The reference refreshes cross-attention fully every 6th step only; here every
    # full step computes it. Latte's spatial blocks see one frame per row, so tokens are chosen per frame.
    "opensora": ToCa(interval=3, interval_curve=(1.0, 0.0), sensitive=None, fresh_ratio=0.1, step_curve=(1.0, 0.0),
                     layer_curve=(1.0, 0.0), module_factor=(("attn", 0.0), ("cross_attn", 0.0), ("mlp", 1.495)),
                     bonus=0.0, tie_cfg=True, warmup=3),
}
