"""Engine invariants on tiny random-weight models of all five diffusers families."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

import ditcache
from ditcache import adapters, zoo
from ditcache.plan import FULL, REUSE, Action, Plan
from ditcache.sampling import sample

# families with a token-subset path on some site; CogVideoX has none (its MLP runs on [text; image] at once)
TOKEN_FAMILIES = ["dit-tiny", "pixart-tiny", "flux-tiny", "sd3-tiny", "wan-tiny", "hunyuan-tiny", "latte-tiny"]
FAMILIES = [*TOKEN_FAMILIES, "cogvideox-tiny"]


def _generate(model, name, batch=2, steps=6, seed=0, method=None, **kw):
    noise, cond, uncond = zoo.conditioning(name, batch, seed)
    if method is None:
        return sample(model, noise, cond, uncond, steps=steps, guidance_scale=3.0), None
    with ditcache.cached(model, method, **kw) as run:
        out = sample(model, noise, cond, uncond, steps=steps, guidance_scale=3.0)
    return out, run


def _patched(model):
    return [name for name, m in model.named_modules() if "forward" in m.__dict__]


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("method", [ditcache.FORA(interval=1), ditcache.TaylorSeer(interval=1, order=2)])
def test_every_step_computed_is_bit_identical(name, method):
    model = zoo.build(name)
    ref, _ = _generate(model, name)
    out, run = _generate(model, name, method=method)
    assert torch.equal(out, ref)
    assert run.stats.counts()["full"] == 6 * len(run.sites)
    assert _patched(model) == [] and not hasattr(model, "_ditcache_run")


@pytest.mark.parametrize("name", FAMILIES)
def test_remove_restores_every_forward(name):
    model = zoo.build(name)
    originals = {n: m.forward for n, m in model.named_modules()}
    run = ditcache.apply(model, ditcache.FORA(interval=2), steps=4)
    lean = {id(s.block) for s in run.sites if s.kind != "block" and adapters.lean_rule(s.block)}
    assert len(_patched(model)) == len(run.sites) + len(lean) + 1  # every site, every lean block, the model
    run.remove()
    assert _patched(model) == []
    assert {n: m.forward for n, m in model.named_modules()} == originals
    run.remove()  # idempotent


@pytest.mark.parametrize("name,extra", [
    ("dit-tiny", {}), ("pixart-tiny", {}), ("latte-tiny", {}), ("flux-tiny", {}), ("wan-tiny", {}), ("sd3-tiny", {}),
    ("sd3-tiny", {"dual_attention_layers": (0,)}), ("hunyuan-tiny", {})])
@pytest.mark.parametrize("method", [ditcache.FORA(interval=3), ditcache.TaylorSeer(interval=3, order=1, warmup=1)])
def test_lean_blocks_return_their_forwards_output_without_the_norms(name, extra, method):
    """A block with a lean rule, on a call where all its branches reuse or forecast, returns x + gate * branch
    (+ ...) without running the norms that feed the branches. The images must be those of every block running
    its own forward (lean off), up to the rounding of a fused multiply-add; the first block's norm1 must run
    on every call with lean off and on the calls that compute its branches only with lean on (FORA(3) over
    6 steps: steps 0, 2 and 5, the reference's count-down rule; CFG is one doubled call per step)."""
    entry = zoo.CONFIGS[name]
    torch.manual_seed(0)
    model = entry.cls(**entry.kwargs, **extra).eval()  # extra: SD3.5's dual attention in the first block
    block = next(m for m in model.modules() if type(m).__name__ in adapters.BLOCKS and adapters.lean_rule(m))
    assert getattr(block, "attn2", None) is not None or not extra
    calls: list[int] = []
    block_outs: list = []  # the block's output at each call, every stream (FLUX.1's text stream included)
    handles = [block.norm1.register_forward_hook(lambda *a: calls.append(1)),
               block.register_forward_hook(lambda m, a, out: block_outs.append(out))]
    outs, norm_calls, per_call = {}, {}, {}
    try:
        for lean in (True, False):
            calls.clear()
            block_outs.clear()
            noise, cond, uncond = zoo.conditioning(name, 2, 0)
            with ditcache.cached(model, method) as run:
                run.executor.lean = lean
                outs[lean] = sample(model, noise, cond, uncond, steps=6, guidance_scale=3.0)
            norm_calls[lean], per_call[lean] = len(calls), list(block_outs)
            sites = {s.index for s in run.sites if s.block is block}
            computed = [r.step for r in run.stats.records if any(r.actions[i] == "full" for i in sites)]
    finally:
        for h in handles:
            h.remove()
    if isinstance(method, ditcache.FORA):
        assert computed == [0, 2, 5]
    assert 0 < len(computed) < 6
    assert norm_calls == {True: len(computed), False: 6}
    assert len(per_call[True]) == len(per_call[False]) == 6
    torch.testing.assert_close(per_call[True], per_call[False], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[True], outs[False], rtol=1e-5, atol=1e-5)
    ref, _ = _generate(model, name, batch=2, steps=6)
    assert not torch.allclose(outs[True], ref, atol=1e-4)  # the blocks did reuse (the comparison is not vacuous)


@pytest.mark.parametrize("name", ["dit-tiny", "pixart-tiny"])
def test_lean_blocks_lay_out_their_output_as_the_forward_does(name):
    """The patch embedding of DiT and PixArt leaves the hidden states channels-first (a transposed
    view); the first block's own forward adds its branch outputs first, so its output, and every later
    block's input, is contiguous. A lean rule adds onto x (x + gate * branch), which would keep x's layout
    in every block; with ``executor.dense`` the lean block copies its stream contiguous first, so cached calls
    see the layouts full calls see, and the images are the same bit for bit (elementwise ops do not depend on
    the layout). FORA(3) over 6 steps: steps 0, 2, 5 compute, 1, 3, 4 reuse in every block."""
    entry = zoo.CONFIGS[name]
    torch.manual_seed(0)
    model = entry.cls(**entry.kwargs).eval()
    blocks = [m for m in model.modules() if type(m).__name__ in adapters.BLOCKS and adapters.lean_rule(m)]
    assert len(blocks) >= 2
    seen: dict[bool, list] = {}  # per dense: per block call, (block, is its input contiguous, is its output)

    def record(i):
        def hook(module, args, kwargs, out):
            x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            seen[dense].append((i, x.is_contiguous(), out.is_contiguous()))
        return hook

    handles = [b.register_forward_hook(record(i), with_kwargs=True) for i, b in enumerate(blocks)]
    outs = {}
    try:
        for dense in (True, False):
            seen[dense] = []
            noise, cond, uncond = zoo.conditioning(name, 2, 0)
            with ditcache.cached(model, ditcache.FORA(interval=3)) as run:
                run.executor.dense = dense
                outs[dense] = sample(model, noise, cond, uncond, steps=6, guidance_scale=3.0)
    finally:
        for h in handles:
            h.remove()
    n = len(blocks)
    assert [r[0] for r in seen[True]] == list(range(n)) * 6  # one call per block per step (CFG batched)
    calls = {d: [seen[d][s * n:(s + 1) * n] for s in range(6)] for d in seen}
    forward = [(i, i > 0, True) for i in range(n)]  # the first input channels-first, the rest contiguous
    for step in range(6):  # full steps run the forward; cached ones the lean rule, laid out the same
        assert calls[True][step] == forward
    for step in (1, 3, 4):  # off: the lean rule keeps the first input's layout all the way down
        assert calls[False][step] == [(i, False, False) for i in range(n)]
    assert torch.equal(outs[True], outs[False])


@pytest.mark.parametrize("name,cls", [("flux-tiny", "FluxSingleTransformerBlock"),
                                      ("hunyuan-tiny", "HunyuanVideoSingleTransformerBlock")])
def test_gated_block_finish_applies_this_steps_gate(name, cls):
    """A single-stream block cached whole returns, on a reuse call, what its own forward returns when its
    pre-gate projection (proj_out) gives the output kept at the last full call: x + this call's gate * kept.
    The expectation is the block's class forward, run apart on the recorded inputs."""
    model = zoo.build(name)
    block = next(m for m in model.modules() if type(m).__name__ == cls)
    calls: list[dict] = []  # per block call: its inputs, its output, the proj_out output if it ran

    def before(m, args, kwargs):
        calls.append({"args": args, "kwargs": kwargs, "pre": None})

    def after(m, args, kwargs, out):
        calls[-1]["out"] = out

    handles = [block.register_forward_pre_hook(before, with_kwargs=True),
               block.register_forward_hook(after, with_kwargs=True),
               block.proj_out.register_forward_hook(lambda m, a, out: calls[-1].__setitem__("pre", out))]
    noise, cond, uncond = zoo.conditioning(name, 2, 0)
    try:
        with ditcache.cached(model, ditcache.FORA(interval=2)):
            sample(model, noise, cond, uncond, steps=5, guidance_scale=3.0)
    finally:
        for h in handles:
            h.remove()
    kept, checked = None, 0
    for call in calls:
        if call["pre"] is not None:
            kept = call["pre"]
            continue
        block.proj_out.forward = lambda x, kept=kept: kept   # (B, L + N, D): the pre-gate output kept
        try:
            want = type(block).forward(block, *call["args"], **call["kwargs"])
        finally:
            del block.proj_out.forward
        torch.testing.assert_close(call["out"], want, rtol=1e-5, atol=1e-6)
        checked += 1
    assert checked >= 2 and kept is not None


def test_lean_rules_serve_only_the_classes_they_reproduce():
    """A block of another class that shares a lean block's name (a user's copy) runs its own forward."""
    from diffusers.models.attention import BasicTransformerBlock

    class FluxTransformerBlock(nn.Module):  # a user's block named like FLUX.1's
        pass

    with torch.device("meta"):
        real = BasicTransformerBlock(8, 1, 8)
    assert adapters.LEAN["basic"].serves(real)
    assert not adapters.LEAN["flux_double"].serves(FluxTransformerBlock())
    assert not adapters.LEAN["basic"].serves(FluxTransformerBlock())


@pytest.mark.parametrize("name", ["dit-tiny", "flux-tiny"])
@pytest.mark.parametrize("method", [ditcache.FORA(interval=2), ditcache.TaylorSeer(interval=2, order=1, warmup=1)])
def test_back_to_back_generations_do_not_leak(name, method):
    model = zoo.build(name)
    noise_a, cond_a, uncond_a = zoo.conditioning(name, 2, seed=0)
    noise_b, cond_b, uncond_b = zoo.conditioning(name, 3, seed=1)
    with ditcache.cached(model, method) as run:
        a = sample(model, noise_a, cond_a, uncond_a, steps=5, guidance_scale=2.0)
        b = sample(model, noise_b, cond_b, uncond_b, steps=7, guidance_scale=2.0)
    assert sum(r.branch == 0 for r in run.stats.records) == 12
    for noise, cond, uncond, steps, got in [(noise_a, cond_a, uncond_a, 5, a), (noise_b, cond_b, uncond_b, 7, b)]:
        fresh = zoo.build(name)
        with ditcache.cached(fresh, method):
            want = sample(fresh, noise, cond, uncond, steps=steps, guidance_scale=2.0)
        assert torch.equal(got, want)


def test_explicit_steps_without_scheduler_restart_each_generation():
    model = zoo.build("dit-tiny")
    noise, cond, _ = zoo.conditioning("dit-tiny", 2)
    ts = [900, 600, 300, 100]

    def loop():
        return [model(noise, timestep=torch.full((2,), t), class_labels=cond["class_labels"]).sample for t in ts]

    with ditcache.cached(model, ditcache.FORA(interval=2), steps=4) as run:
        first, second = loop(), loop()
    for x, y in zip(first, second):
        assert torch.equal(x, y)
    assert [r.step for r in run.stats.records] == [0, 1, 2, 3] * 2


def test_unknown_step_count_is_a_clear_error():
    model = zoo.build("dit-tiny")
    noise, cond, _ = zoo.conditioning("dit-tiny", 1)
    with ditcache.cached(model, "fora"), pytest.raises(RuntimeError, match="how many denoising steps"):
        model(noise, timestep=torch.tensor([10]), class_labels=cond["class_labels"])


@pytest.mark.parametrize("name", ["dit-tiny", "pixart-tiny", "wan-tiny"])
def test_split_cfg_branches_keep_separate_caches(name):
    """Calls with a repeated timestep are branches of one step: each reads only its own cache."""
    model = zoo.build(name)
    _, cond, uncond = zoo.conditioning(name, 2)
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn((2, *zoo.CONFIGS[name].latent), generator=g) for _ in range(5)]
    ts = [torch.full((2,), t) for t in (950, 700, 500, 300, 50)]
    method = ditcache.FORA(interval=3)

    def call(x, t, kw):
        return model(hidden_states=x, timestep=t, return_dict=False, **kw)[0]

    with ditcache.cached(model, method, steps=5) as run:
        split = [(call(x, t, uncond), call(x, t, cond)) for x, t in zip(xs, ts)]
    assert [r.branch for r in run.stats.records] == [0, 1] * 5
    for which, kw in ((0, uncond), (1, cond)):
        with ditcache.cached(model, method, steps=5):
            alone = [call(x, t, kw) for x, t in zip(xs, ts)]
        for pair, ref in zip(split, alone):
            assert torch.equal(pair[which], ref)


@dataclass
class RandomTokens:
    """Test method: step 0 full; later steps run k random tokens on every site that has a subset path."""

    k: int
    seed: int = 0
    name: ClassVar[str] = "random-tokens"

    def validate(self) -> None:
        pass

    def plan(self, ctx, sites, store):
        if ctx.step == 0:
            return [FULL] * len(sites)
        g = torch.Generator().manual_seed(self.seed + ctx.step)
        plans = []
        for s in sites:  # rows and tokens as the site sees them (Latte's blocks: frames or positions as rows)
            if not (s.partial and s.stream == "image"):
                plans.append(REUSE)
                continue
            rows, n = store.entries[(ctx.branch, s.index)].out[0].shape[:2]
            idx = torch.stack([torch.randperm(n, generator=g)[: self.k] for _ in range(rows)])  # (rows, k)
            plans.append(Plan(Action.PARTIAL, tokens=idx))
        return plans


@pytest.mark.parametrize("name", TOKEN_FAMILIES)
def test_partial_with_every_token_equals_full(name):
    model = zoo.build(name)
    ref, _ = _generate(model, name, steps=4)
    out, run = _generate(model, name, steps=4, method=_AllTokensOrFull())
    assert run.stats.counts()["partial"] > 0
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)  # permuted rows may round differently in BLAS


@dataclass
class _AllTokensOrFull:
    """PARTIAL with a random permutation of every token where a subset path exists, FULL elsewhere."""

    name: ClassVar[str] = "all-tokens"

    def validate(self) -> None:
        pass

    def plan(self, ctx, sites, store):
        if ctx.step == 0:
            return [FULL] * len(sites)
        g = torch.Generator().manual_seed(ctx.step)
        plans = []
        for s in sites:
            if not (s.partial and s.stream == "image"):
                plans.append(FULL)
                continue
            rows, n = store.entries[(ctx.branch, s.index)].out[0].shape[:2]
            idx = torch.stack([torch.randperm(n, generator=g) for _ in range(rows)])  # (rows, N)
            plans.append(Plan(Action.PARTIAL, tokens=idx))
        return plans


@pytest.mark.parametrize("name", TOKEN_FAMILIES)
def test_partial_k_tokens_keeps_the_rest_of_the_base(name):
    model = zoo.build(name)
    noise, cond, _ = zoo.conditioning(name, 2)
    site_outputs: dict[str, list[torch.Tensor]] = {}
    method = RandomTokens(k=3)
    run = ditcache.apply(model, method, steps=3)
    # the branch modules' own PARTIAL path, seen through their hooks: a lean block would build a partial MLP's
    # output without calling the module (the lean path is checked against this one in
    # test_lean_blocks_feed_a_partial_mlp_its_rows_only)
    run.executor.lean = False
    handles = []
    for site in run.sites:
        if site.partial:
            handles.append(site.module.register_forward_hook(
                lambda m, a, o, name=site.name: site_outputs.setdefault(name, []).append(o)))
    inputs = {}
    for site in run.sites:
        if site.partial:
            handles.append(site.module.register_forward_pre_hook(
                lambda m, a, kw, name=site.name: inputs.setdefault(name, []).append(a[0] if a else kw["hidden_states"]),
                with_kwargs=True))
    kw = {k: v for k, v in cond.items()}
    for t in (900, 500):
        model(hidden_states=noise, timestep=torch.full((2,), t) if name != "flux-tiny" else torch.full((2,), t / 1000),
              return_dict=False, **kw)
    plans = run.plans
    run.remove()
    for h in handles:
        h.remove()
    checked = 0
    for site, plan in zip(run.sites, plans):
        if plan.action is not Action.PARTIAL:
            continue
        base, out = site_outputs[site.name]          # step 0 (full), step 1 (partial)
        idx = plan.tokens                            # (B, k)
        mask = torch.ones(out.shape[:2], dtype=torch.bool)
        mask.scatter_(1, idx, False)
        assert torch.equal(out[mask], base[mask])    # untouched tokens: the base, exactly
        x1 = inputs[site.name][1]
        full = site.module(x1) if site.partial == "tokens" and site.kind == "mlp" else None
        if full is not None:                         # token-wise module: fresh rows = full compute at idx
            torch.testing.assert_close(out.gather(1, idx[..., None].expand(-1, -1, out.shape[-1])),
                                       full.gather(1, idx[..., None].expand(-1, -1, out.shape[-1])))
        checked += 1
    assert checked > 0


# FLOPs of one dit-tiny call at batch 4 (2 images, CFG), worked out by hand (hidden D = 16, N = 16 tokens of
# 8x8 latents with 2x2 patches, 2 heads x 8, 2 blocks; a linear of n_in -> n_out costs 2 n_in n_out per row):
#   attn1 site: q, k, v, out projections 4 * 2*N*D*D = 32768, QK^T and AV 2 * 2*N*N*D = 16384 -> 49152 per image
#   ff site:    D -> 4D -> D, 2 * 2*N*D*4D = 65536 per image
#   outside the sites: patch embedding conv 2*(4*2*2)*16 per token = 8192; per block the timestep MLP
#   (256 -> 16 -> 16: 8704) and adaLN-Zero linear (16 -> 96: 3072); the final layer's timestep MLP (8704),
#   proj_out_1 (16 -> 32: 1024) and proj_out_2 (16 -> 32 per token: 16384) -> 8192 + 2*11776 + 26112 = 57856
ATTN_FLOPS, FF_FLOPS, OTHER_FLOPS = 4 * 49152, 4 * 65536, 4 * 57856
CALL_FLOPS = 2 * (ATTN_FLOPS + FF_FLOPS) + OTHER_FLOPS  # 1148928


# FORA's reference schedule on 10 steps (s = 9 - step counts down; full iff s == 9 or s % N == 0):
@pytest.mark.parametrize("interval,full", [
    (1, list(range(10))), (2, [0, 1, 3, 5, 7, 9]), (3, [0, 3, 6, 9]), (5, [0, 4, 9]),
])
def test_fora_counts_and_flops(interval, full):
    model = zoo.build("dit-tiny")
    _, run = _generate(model, "dit-tiny", steps=10, method=ditcache.FORA(interval=interval))
    n = len(run.sites)
    assert [r.step for r in run.stats.records if r.actions == ["full"] * n] == full
    assert run.stats.counts() == {"full": len(full) * n, "reuse": (10 - len(full)) * n, "forecast": 0,
                                  "partial": 0, "skip": 0, "blend": 0}
    assert run.stats.records[0].site_flops == [ATTN_FLOPS, FF_FLOPS] * 2
    reused = [r for r in run.stats.records if r.step not in full]
    assert all(r.site_flops == [0] * n and r.flops == OTHER_FLOPS for r in reused)  # reused sites execute nothing
    assert run.stats.flops == len(full) * CALL_FLOPS + (10 - len(full)) * OTHER_FLOPS


def test_flop_counter_counts_cpu_attention():
    from ditcache.engine import flop_counter

    q = torch.randn(2, 4, 64, 32)
    with flop_counter() as fc:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert fc.get_total_flops() == 2 * 2 * (2 * 4 * 64 * 64 * 32)  # QK^T and AV


def test_cache_bytes_reported():
    model = zoo.build("dit-tiny")
    _, run = _generate(model, "dit-tiny", steps=4, method=ditcache.TaylorSeer(interval=2, order=1, warmup=1))
    # batch 4 (CFG), 16 tokens, hidden 16, fp32 -> 1 KiB per output; 4 sites x 2 factors
    assert run.stats.peak_cache_bytes == 4 * 2 * 4 * 16 * 16 * 4


def test_bad_inputs_give_clear_errors():
    model = zoo.build("dit-tiny")
    with pytest.raises(KeyError, match="known methods"):
        ditcache.apply(model, "no-such-method")
    with pytest.raises(ValueError, match="interval"):
        ditcache.FORA(interval=0)
    with pytest.raises(ValueError, match="interval"):
        ditcache.TaylorSeer(interval=0)
    with pytest.raises(ValueError, match="order"):
        ditcache.TaylorSeer(order=-1)
    with pytest.raises(TypeError, match="cannot map Linear.*DiTTransformer2DModel"):
        ditcache.apply(nn.Linear(3, 3), "fora")
    with pytest.raises(TypeError, match="not a ditcache method"):
        ditcache.apply(model, 42)
    with ditcache.cached(model, "fora"), pytest.raises(RuntimeError, match="already applied"):
        ditcache.apply(model, "taylorseer")
    assert _patched(model) == []


def test_partial_on_a_site_without_subset_path_is_refused():
    model = zoo.build("flux-tiny")
    noise, cond, uncond = zoo.conditioning("flux-tiny", 1)

    @dataclass
    class Bad:
        name: ClassVar[str] = "bad"

        def validate(self):
            pass

        def plan(self, ctx, sites, store):
            return [Plan(Action.PARTIAL, tokens=torch.zeros(1, 1, dtype=torch.long))] * len(sites)

    with ditcache.cached(model, Bad()), pytest.raises(ValueError, match="no token-subset path"):
        sample(model, noise, cond, steps=2)


class TinyAttention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        return self.out(torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, -1) @ v)


class TinyBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.attn = TinyAttention(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x, t):
        x = x + self.attn(self.norm(x) * (1 + t))
        return x + self.mlp(self.norm(x))


class TinyModel(nn.Module):
    def __init__(self, d=8, depth=2):
        super().__init__()
        self.blocks = nn.ModuleList(TinyBlock(d) for _ in range(depth))

    def forward(self, x, timestep):
        t = timestep.float().reshape(-1, 1, 1) / 1000
        for b in self.blocks:
            x = b(x, t)
        return x


def test_user_registered_plain_torch_block():
    model = TinyModel().eval()
    with pytest.raises(TypeError, match="register_block"):
        ditcache.apply(model, "fora")
    ditcache.register_block(TinyBlock, ditcache.Branch("attn", "attn"), ditcache.Branch("mlp", "mlp", "tokens"))
    x = torch.randn(2, 5, 8)
    ts = [torch.full((2,), t) for t in (900, 600, 300, 100)]
    with torch.no_grad():
        ref = [model(x, t) for t in ts]
        with ditcache.cached(model, ditcache.FORA(interval=1), steps=4) as run:
            same = [model(x, t) for t in ts]
        with ditcache.cached(model, ditcache.FORA(interval=2), steps=4) as run2:
            cached = [model(x, t) for t in ts]
    assert all(torch.equal(a, b) for a, b in zip(ref, same))
    assert [s.name for s in run.sites] == ["blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp"]
    # FORA(2) on 4 steps computes steps 0, 1 and 3 (the reference counts down: s = 3, 2, 0) and reuses step 2
    assert run2.stats.full_steps() == 3 and torch.equal(cached[1], ref[1]) and not torch.equal(cached[2], ref[2])


def test_user_block_with_a_lean_rule():
    """register_block(lean=...) on a user's block: on the steps where both branches are reused, the rule builds
    x + attn + mlp from the cached outputs and the block's norm does not run; the outputs are bit-identical to
    the block's own forward (the same two adds in the same order). FORA(2) over 4 steps computes steps 0, 1, 3
    (the reference's count-down); the first block's norm, called twice per forward, then runs 2 x 3 times with
    the rule and 2 x 4 times without it."""

    def lean(block, inputs, cached):
        return inputs["x"] + cached("attn") + cached("mlp")

    model = TinyModel().eval()
    ditcache.register_block(TinyBlock, ditcache.Branch("attn", "attn"), ditcache.Branch("mlp", "mlp", "tokens"),
                            lean=lean)
    calls: list[int] = []
    handle = model.blocks[0].norm.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 5, 8)
    ts = [torch.full((2,), t) for t in (900, 600, 300, 100)]
    outs, counts = {}, {}
    try:
        with torch.no_grad():
            for on in (True, False):
                calls.clear()
                with ditcache.cached(model, ditcache.FORA(interval=2), steps=4) as run:
                    run.executor.lean = on
                    outs[on] = [model(x, t) for t in ts]
                counts[on] = len(calls)
    finally:
        handle.remove()
    assert counts == {True: 3 * 2, False: 4 * 2}
    assert all(torch.equal(a, b) for a, b in zip(outs[True], outs[False]))
    assert len(_patched(model)) == 0  # the lean wrappers went with the run


def test_register_block_refuses_a_lean_rule_it_cannot_serve():
    def lean(block, inputs, cached):
        return None

    branches = (ditcache.Branch("attn", "attn"), ditcache.Branch("mlp", "mlp", "tokens"))
    with pytest.raises(TypeError, match="pass the block class"):
        ditcache.register_block("TinyBlock", *branches, lean=lean)
    with pytest.raises(TypeError, match="must be a function"):
        ditcache.register_block(TinyBlock, *branches, lean="x + attn + mlp")
    with pytest.raises(ValueError, match="whole-block site"):
        ditcache.register_block(TinyBlock, ditcache.Branch("", "block"), outputs=("x",), lean=lean)

    class Subclass(TinyBlock):
        pass

    ditcache.register_block(TinyBlock, *branches, lean=lean)
    rule = adapters.LEAN[adapters.BLOCKS["TinyBlock"].lean]
    assert rule.serves(TinyBlock(8)) and not rule.serves(Subclass(8))


# What each traced method must plan on pixart-tiny (7 steps, 16 tokens; sites attn1, attn2, ff in 2 blocks), from
# its schedule rule worked out by hand: per step, one (action, tokens) per site.
_SITES = 6


def _toca_expected(step):
    """ToCa(fresh_ratio=0.5) on its counter schedule, DiT defaults: interval(p) = round(3 / (0.6 + 0.8 p)), 2 inside
    p in [0.6, 0.8), p = step / 6. Step 0 is full (warm-up) and sets the next at 0 + round(3 / 0.6) = 5; step 5
    (p = 5/6) sets 5 + round(3 / 1.267) = 7; the last step (6) is always full. Between, r = 0.5 (4p - 1) f_layer
    f_module clamped to [0, 1], k = floor(16 r); f_layer 0.8, 1.2 for the two blocks; f_module 0 for attn1 (reused
    whole), 0.6 for attn2, 2.5 for ff. Step 1 (4p - 1 < 0) reuses everything; steps 2, 3, 4 (4p - 1 = 1/3, 1, 5/3):
    attn2: 16 * 0.24 * (1/3, 1, 5/3) = 1.28, 3.84, 6.4 and 16 * 0.36 * (...) = 1.92, 5.76, 9.6;
    ff: 16 * (1/3, 1, 1) = 5.3, 16, 16 and 16 * (0.5, 1, 1) = 8, 16, 16, except that the 8 is 7.999999999999999
    in floating point (0.5 * (4 * 2/6 - 1) * 1.2 * 2.5 * 16), which the floor takes to 7."""
    if step in (0, 5, 6):
        return [("full", 0)] * _SITES
    if step == 1:
        return [("reuse", 0)] * _SITES
    attn2_0, ff_0, attn2_1, ff_1 = {2: (1, 5, 1, 7), 3: (3, 16, 5, 16), 4: (6, 16, 9, 16)}[step]
    return [("reuse", 0), ("partial", attn2_0), ("partial", ff_0),
            ("reuse", 0), ("partial", attn2_1), ("partial", ff_1)]


def _clusca_expected(step):
    """ClusCa(clusters=3, warmup=1, interval=3): full on step 0 (warm-up), then every 3rd step after it: 3, 6;
    between, each image MLP (ff) computes one token per cluster (3) and the other branches are forecast."""
    if step in (0, 3, 6):
        return [("full", 0)] * _SITES
    return [("forecast", 0), ("forecast", 0), ("partial", 3)] * 2


def _taylorseer_expected(step):
    """TaylorSeer(interval=3), warm-up 2: full on 0, 1, then every 3rd step after step 1: 4 (7 is past the end);
    forecast between."""
    return [("full" if step in (0, 1, 4) else "forecast", 0)] * _SITES


@pytest.mark.parametrize("method,expected", [
    (ditcache.ToCa(fresh_ratio=0.5, schedule="counter"), _toca_expected),
    (ditcache.ClusCa(clusters=3, warmup=1, interval=3), _clusca_expected),
    (ditcache.TaylorSeer(interval=3), _taylorseer_expected)], ids=["toca", "clusca", "taylorseer"])
def test_trace_replays_exactly(method, expected):
    """A replay reproduces its recording; and the recording itself is what the method's rule says, so a wrong plan
    cannot replay its way through."""
    from ditcache.methods import Replay

    model = zoo.build("pixart-tiny")
    noise, cond, uncond = zoo.conditioning("pixart-tiny", 2)
    with ditcache.cached(model, method, trace=True) as run:
        a = sample(model, noise, cond, uncond, steps=7, guidance_scale=3.0)
        b = sample(model, noise * 0.5, cond, uncond, steps=7, guidance_scale=3.0)
    assert len(run.trace) == 2 and len(run.trace[0]) == 7
    with ditcache.cached(model, Replay().load(run.trace)) as replay:
        a2 = sample(model, noise, cond, uncond, steps=7, guidance_scale=3.0)
        b2 = sample(model, noise * 0.5, cond, uncond, steps=7, guidance_scale=3.0)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    assert [r.actions for r in replay.stats.records] == [r.actions for r in run.stats.records]
    assert [r.tokens for r in replay.stats.records] == [r.tokens for r in run.stats.records]
    assert [s.name.split(".")[-1] for s in run.sites] == ["attn1", "attn2", "ff"] * 2
    for r in run.stats.records:
        plan = expected(r.step)
        assert (r.actions, r.tokens) == ([a for a, _ in plan], [k for _, k in plan]), (r.generation, r.step)


def test_cogvideox_sites_grid_and_methods():
    """CogVideoX: joint attention and a joint MLP per block, frames-first latent grid; whole-branch methods
    run (FreqCa skips every block on its cache steps), token methods refuse before any step."""
    name = "cogvideox-tiny"
    model = zoo.build(name)
    noise, cond, uncond = zoo.conditioning(name, 2)
    assert noise.shape == (2, 2, 4, 8, 8)  # (B, F, C, H, W)
    assert adapters.token_grid(model, {"hidden_states": noise}) == (2, 4, 4)  # 2 frames of 8/2 x 8/2 patches
    run = ditcache.apply(model, ditcache.FORA())
    assert [(s.name, s.kind, s.stream, s.partial) for s in run.sites] == [
        (f"transformer_blocks.{i}.{c}", k, "joint", None)
        for i in (0, 1) for c, k in (("attn1", "attn"), ("ff", "mlp"))]
    run.remove()
    with ditcache.cached(model, ditcache.FreqCa(interval=3)) as run:
        sample(model, noise, cond, None, steps=10)
    full = run.stats.full_steps()
    assert run.stats.counts()["skip"] == 4 * (10 - full)  # 4 sites skipped on each of the other steps
    for method, words in ((ditcache.ClusCa(), "image MLP branches"), (ditcache.ToCa(), "use FORA(interval=")):
        with pytest.raises(ValueError, match=re.escape(words)):
            ditcache.apply(model, method)


@pytest.mark.parametrize("name,mlp_norm", [("dit-tiny", "norm3"), ("pixart-tiny", "norm2"), ("latte-tiny", "norm2"),
                                           ("flux-tiny", "norm2")])
def test_lean_blocks_feed_a_partial_mlp_its_rows_only(name, mlp_norm):
    """On ClusCa's partial steps (attention forecast, the MLP computing one token per cluster) a block with a lean
    rule runs the MLP's norm and modulation on the chosen rows only, and no norm for the forecast attention.
    ClusCa(interval 3, one warm-up step) over 6 steps computes in full at steps 0 and 3 (TaylorSeer's counter),
    so the first block's MLP norm sees N rows there and K = 4 per sample at the four steps between; with lean
    off it sees N rows at every step. Images, each block's output at every call and the counted FLOPs (matrix
    products only: the norms count none) must equal those of lean off, up to rounding."""
    entry = zoo.CONFIGS[name]
    torch.manual_seed(0)
    model = entry.cls(**entry.kwargs).eval()
    block = next(m for m in model.modules() if type(m).__name__ in adapters.BLOCKS and adapters.lean_rule(m))
    rows: list[int] = []
    outs: list = []
    handles = [getattr(block, mlp_norm).register_forward_hook(lambda m, a, out: rows.append(a[0].shape[-2])),
               block.register_forward_hook(lambda m, a, out: outs.append(out))]
    got = {}
    try:
        for lean in (True, False):
            rows.clear()
            outs.clear()
            noise, cond, uncond = zoo.conditioning(name, 2, 0)
            with ditcache.cached(model, ditcache.ClusCa(interval=3, clusters=4, warmup=1)) as run:
                run.executor.lean = lean
                image = sample(model, noise, cond, uncond, steps=6, guidance_scale=3.0)
            got[lean] = (image, list(outs), list(rows), run.stats.flops)
    finally:
        for h in handles:
            h.remove()
    n = got[False][2][0]
    assert got[False][2] == [n] * 6
    assert got[True][2] == [n, 4, 4, n, 4, 4]
    assert got[True][3] == got[False][3] > 0
    torch.testing.assert_close(got[True][1], got[False][1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[True][0], got[False][0], rtol=1e-5, atol=1e-5)
