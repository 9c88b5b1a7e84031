"""ToCa and ClusCa on the engine: reductions to plain reuse / forecast, r = 1 = FULL, errors."""

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

import ditcache
from ditcache import zoo
from ditcache.plan import FULL, REUSE, Action, Site
from ditcache.sampling import sample

FAMILIES = ["dit-tiny", "pixart-tiny", "flux-tiny", "sd3-tiny", "wan-tiny", "hunyuan-tiny", "latte-tiny"]


def _run(model, name, method, steps=8, batch=2):
    noise, cond, uncond = zoo.conditioning(name, batch)
    if method is None:
        return sample(model, noise, cond, uncond, steps=steps, guidance_scale=3.0), None
    with ditcache.cached(model, method) as run:
        return sample(model, noise, cond, uncond, steps=steps, guidance_scale=3.0), run


@dataclass
class FullSteps:
    """FULL on the given steps, REUSE elsewhere: the plain-reuse baseline of a schedule."""

    steps: tuple[int, ...]
    name: ClassVar[str] = "full-steps"

    def validate(self):
        pass

    def plan(self, ctx, sites, store):
        return [FULL if ctx.step in self.steps else REUSE] * len(sites)


@pytest.mark.parametrize("name,preset", [("dit-tiny", "dit"), ("pixart-tiny", "pixart"), ("flux-tiny", "flux")])
def test_toca_ratio_zero_is_plain_reuse_on_its_schedule(name, preset):
    model = zoo.build(name)
    out, run = _run(model, name, ditcache.ToCa.preset(preset, fresh_ratio=0.0), steps=12)
    full = tuple(r.step for r in run.stats.records if all(a == "full" for a in r.actions))
    assert run.stats.counts()["partial"] == 0 and 1 < len(full) < 12
    ref, _ = _run(model, name, FullSteps(full), steps=12)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("name", ["dit-tiny", "pixart-tiny"])
def test_toca_ratio_one_equals_full(name):
    model = zoo.build(name)
    ref, _ = _run(model, name, None)
    every = ditcache.ToCa(fresh_ratio=1.0, step_curve=(1.0, 0.0), layer_curve=(1.0, 0.0),
                          module_factor=(("attn", 1.0), ("cross_attn", 1.0), ("mlp", 1.0)))
    out, run = _run(model, name, every)
    assert run.stats.counts()["reuse"] == 0 and run.stats.counts()["partial"] > 0
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)  # top-k permutes rows: BLAS rounding only


def test_toca_schedule_follows_progress():
    toca = ditcache.ToCa.preset("dit")
    assert toca.step_interval(0.0) == 5 and toca.step_interval(0.7) == 2 and toca.step_interval(1.0) == 2
    assert toca.fresh_ratio_at(0.0, 0.5, "mlp") == 0.0             # f_step = 4p - 1 <= 0 early
    assert toca.fresh_ratio_at(1.0, 1.0, "mlp") == pytest.approx(0.07 * 3 * 1.2 * 2.5)
    assert toca.fresh_ratio_at(1.0, 1.0, "attn") == 0.0


def test_toca_tied_cfg_picks_identical_tokens_for_both_halves():
    model = zoo.build("pixart-tiny")
    seen = []
    toca = ditcache.ToCa.preset("pixart", fresh_ratio=0.5)
    orig = toca.plan

    def spy(ctx, sites, store):
        plans = orig(ctx, sites, store)
        seen.extend(p.tokens for p in plans if p.action is Action.PARTIAL)
        return plans

    object.__setattr__(toca, "plan", spy)
    _run(model, "pixart-tiny", toca)
    assert seen and all(torch.equal(t[:2], t[2:]) for t in seen)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("score", ["attention", "key_norm"])
def test_toca_runs_on_every_family(name, score):
    """Every token fresh (ratio 1, flat step and layer curves, factor 1 for cross-attention and MLPs): each
    partial call covers all N of its tokens (in score order), so the run must equal one that computes those
    branches in full on ToCa's cache steps and reuses self-attention, up to float summation order."""
    model = zoo.build(name)
    preset = {"pixart-tiny": "pixart", "wan-tiny": "pixart", "flux-tiny": "flux"}.get(name, "dit")
    toca = ditcache.ToCa.preset(preset, fresh_ratio=1.0, step_curve=(1.0, 0.0), layer_curve=(1.0, 0.0), score=score,
                                module_factor=(("attn", 0.0), ("cross_attn", 1.0), ("mlp", 1.0)))
    out, run = _run(model, name, toca, steps=10)
    full = {r.step for r in run.stats.records if r.branch == 0 and all(a == "full" for a in r.actions)}
    partial = {i for r in run.stats.records for i, a in enumerate(r.actions) if a == "partial"}
    assert partial and 0 < len(full) < 10

    class Same:  # ToCa's full steps; between them its refreshed branches computed whole, the rest reused
        name = "same"

        def validate(self):
            pass

        def plan(self, ctx, sites, store):
            return [FULL if ctx.step in full or s.index in partial else REUSE for s in sites]

    ref, _ = _run(model, name, Same(), steps=10)
    # summation order's error scales with the summands, not with each output element: latte-tiny's random
    # outputs reach ~300, and on an AMD EPYC an element near 0 differed by 4.6e-5 (1.5e-7 of that scale)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5 * max(1.0, ref.abs().max().item()))


@pytest.mark.parametrize("name", ["dit-tiny", "flux-tiny", "wan-tiny", "hunyuan-tiny"])
@pytest.mark.parametrize("score", ["attention", "key_norm"])
def test_toca_scores_from_kept_keys_equal_scores_from_projecting_again(name, score):
    """The full step keeps its self-attention's raw keys; scoring from them must pick the same tokens as
    projecting the kept input again (same op, same input: bit-identical), and layer 0's key projection
    must run only when the attention itself runs (every full step; the dit preset never refreshes
    attention tokens), not once more per score."""
    model = zoo.build(name)
    preset = {"wan-tiny": "pixart", "flux-tiny": "flux"}.get(name, "dit")
    toca = ditcache.ToCa.preset(preset, fresh_ratio=0.5, score=score)
    out, run = _run(model, name, toca, steps=10)

    projecting = ditcache.ToCa.preset(preset, fresh_ratio=0.5, score=score, reuse_keys=False)
    ref, ref_run = _run(model, name, projecting, steps=10)
    assert run.stats.counts()["partial"] > 0
    assert [r.actions for r in run.stats.records] == [r.actions for r in ref_run.stats.records]
    assert torch.equal(out, ref)

    if name == "dit-tiny":
        calls = {}
        for reuse in (True, False):
            calls[reuse] = []
            attn0 = model.transformer_blocks[0].attn1
            handle = attn0.to_k.register_forward_hook(lambda m, a, o, c=calls[reuse]: c.append(a[0].shape[1]))
            _, counted = _run(model, name, ditcache.ToCa.preset("dit", fresh_ratio=0.5, score=score,
                                                                reuse_keys=reuse), steps=10)
            handle.remove()
        attn_index = next(s.index for s in counted.sites if s.layer == 0 and s.kind == "attn")
        attn_runs = sum(r.actions[attn_index] in ("full", "partial") for r in counted.stats.records)
        scored = sum(1 for r in counted.stats.records if "partial" in r.actions
                     and all(a != "partial" for a in counted.stats.records[r.step - 1].actions))
        assert attn_runs > 0 and len(calls[True]) == attn_runs
        assert scored > 0 and len(calls[False]) == attn_runs + scored  # one more projection per interval scored


@pytest.mark.parametrize("name", FAMILIES)
def test_clusca_without_propagation_is_taylorseer_outside_the_fresh_tokens(name):
    """Feed both methods the same inputs each step: every branch output equals TaylorSeer's except at
    the fresh tokens of PARTIAL sites (whole-block sites add their forecast to a changed input)."""
    model = zoo.build(name)
    _, cond, _ = zoo.conditioning(name, 2)
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn((2, *zoo.CONFIGS[name].latent), generator=g) for _ in range(6)]
    scale = 1e-3 if name == "flux-tiny" else 1.0
    ts = [torch.full((2,), t * scale) for t in (900, 800, 700, 600, 500, 400)]
    kw = dict(interval=3, order=1, warmup=1)

    def record(method):
        outs = {}
        with ditcache.cached(model, method, steps=6) as run:
            run.executor.lean = False  # every branch module is called (lean blocks read forecasts without it)
            hooks = [s.module.register_forward_hook(lambda m, a, o, i=s.index: outs.setdefault(i, []).append(o))
                     for s in run.sites]
            for x, t in zip(xs, ts):
                model(hidden_states=x, timestep=t, return_dict=False, **cond)
            plans = [r for r in run.stats.records]
        for h in hooks:
            h.remove()
        return outs, run, plans

    clus_out, clus_run, _ = record(ditcache.ClusCa(gamma=0.0, clusters=3, refresh="step", **kw))
    ts_out, _, _ = record(ditcache.TaylorSeer(**kw))
    partial_steps = [r.step for r in clus_run.stats.records if "partial" in r.actions]
    assert partial_steps
    for site in clus_run.sites:
        for step in range(6):
            a, b = clus_out[site.index][step], ts_out[site.index][step]
            if clus_run.stats.records[step].actions[site.index] == "partial":
                same = (a == b).all(-1)                             # (B, N) tokens left untouched
                assert same.sum(-1).min() >= a.shape[1] - 3         # at most K = 3 fresh tokens differ
            elif site.kind != "block":  # forecasts ignore their inputs; full steps see the same inputs
                assert all(torch.equal(x, y) for x, y in zip(_tup(a), _tup(b)) if x is not None)


def _tup(o):
    return o if isinstance(o, tuple) else (o,)


class _Doubler(torch.nn.Module):
    """One block whose MLP doubles its input: x -> x + 2x (so the MLP output at each step is known)."""

    def __init__(self):
        super().__init__()
        self.mlp = torch.nn.Linear(1, 1, bias=False)
        self.mlp.weight.data.fill_(2.0)

    def forward(self, x):
        return x + self.mlp(x)


class _OneBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([_Doubler()])

    def forward(self, hidden_states, timestep):
        return self.blocks[0](hidden_states)


class _WithoutTerms:
    """Taylor's forecasts from a forecaster that does not give its terms: the engine then forecasts every row
    first and refreshes the forecast (``tokens.refresh``) instead of editing the anchor first."""

    def __init__(self):
        self._taylor = ditcache.forecast.Taylor()

    def validate(self):
        self._taylor.validate()

    def held(self, order):
        return self._taylor.held(order)

    def update(self, *args):
        self._taylor.update(*args)

    def predict(self, *args):
        return self._taylor.predict(*args)


@pytest.mark.parametrize("path", ["terms", "forecast first"])
@pytest.mark.parametrize("refresh", ["persist", "step"])
def test_clusca_refresh_and_propagation_by_hand(refresh, path):
    """Four 1-D tokens, timesteps 3, 2, 1, 0; ClusCa(interval 3, warm-up 2, order 1, K 2, gamma 0.25):
    steps 0 and 1 are full, 2 and 3 refresh one token per cluster. With a = 2 x1 (the MLP output at step
    1, the anchor) and F1 = (2 x1 - 2 x0) / (2 - 3) (timestep units), the forecast at timestep t adds
    rise(t) = F1 (t - 2). A fresh token r gets anchor fresh_r - rise_r(t); every other
    token i of r's cluster gets (1 - gamma) anchor_i + gamma (fresh_r - rise_r(t)); outputs are anchor +
    rise. "persist" carries the edited anchor into step 3, "step" starts step 3 from a again."""
    ditcache.register_block(_Doubler, ditcache.Branch("mlp", "mlp", "tokens"))
    model = _OneBlock()
    xs = [torch.tensor([[[0.0], [0.1], [5.0], [5.2]]]) * (1 + 0.1 * s) for s in range(4)]
    ts = [3.0, 2.0, 1.0, 0.0]
    outs = []
    hook = model.blocks[0].mlp.register_forward_hook(lambda m, a, o: outs.append(o))
    gamma = 0.25
    forecast = ditcache.forecast.Taylor() if path == "terms" else _WithoutTerms()
    with ditcache.cached(model, ditcache.ClusCa(interval=3, warmup=2, order=1, clusters=2, gamma=gamma,
                                                refresh=refresh, forecast=forecast), steps=4, trace=True) as run:
        results = []
        for x, t in zip(xs, ts):
            outs.clear()
            results.append(model(x, timestep=t) - x)    # the block's residual = the MLP site's output
    hook.remove()
    assert [r.actions for r in run.stats.records] == [["full"], ["full"], ["partial"], ["partial"]]
    a = (2 * xs[1]).flatten()
    f1 = (2 * xs[1] - 2 * xs[0]).flatten() / (2.0 - 3.0)
    anchor = a.clone()
    for step in (2, 3):
        plan = run.trace[0][step][0]
        fresh_idx = plan["tokens"][0]
        labels = plan["propagate"][0][0]
        rise = f1 * (ts[step] - 2.0)
        fresh = (2 * xs[step]).flatten()
        if refresh == "step":
            anchor = a.clone()
        edited = anchor.clone()
        for r in fresh_idx:
            edited[r] = fresh[r] - rise[r]
        for i in range(4):
            if i not in fresh_idx:
                r = next(j for j in fresh_idx if labels[j] == labels[i])
                edited[i] = (1 - gamma) * anchor[i] + gamma * (fresh[r] - rise[r])
        torch.testing.assert_close(results[step].flatten(), edited + rise)
        anchor = edited
    # the two clusters are {0, 1} and {2, 3}
    assert labels[0] == labels[1] != labels[2] == labels[3]


def test_clusca_draws_every_site_at_once_as_one_site_at_a_time():
    """ClusCa's tokens for all sites of a step, drawn in one call per stream, are the ones drawn site by site
    from the same generator (image and text sites interleaved, as in a Flux double block)."""
    from ditcache.tokens import one_per_cluster

    g = torch.Generator().manual_seed(3)
    labels = {"image": torch.randint(4, (2, 10), generator=g), "text": torch.randint(2, (2, 3), generator=g)}
    state = {"labels": labels, ("k", "image"): 4, ("k", "text"): 2}
    sites = [Site(name=f"s{i}", kind="mlp", layer=i, module=None, partial="tokens", stream=stream, index=i)
             for i, stream in enumerate(["image", "text", "image", "text", "image"])]
    got = ditcache.ClusCa()._picks(state, sites, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    want = [one_per_cluster(labels[s.stream], state[("k", s.stream)], gen) for s in sites]
    assert len(got) == 5 and all(torch.equal(a, b) for a, b in zip(got, want))


def test_bad_token_method_parameters():
    with pytest.raises(ValueError, match="r0"):
        ditcache.ToCa(fresh_ratio=-0.1)
    with pytest.raises(ValueError, match="score"):
        ditcache.ToCa(score="magic")
    with pytest.raises(KeyError, match="known"):
        ditcache.ToCa.preset("unet")
    with pytest.raises(ValueError, match="clusters"):
        ditcache.ClusCa(clusters=0)
    for g in (-0.1, 1.5):
        with pytest.raises(ValueError, match="gamma"):
            ditcache.ClusCa(gamma=g)
    model = zoo.build("dit-tiny")   # 16 image tokens
    with pytest.raises(ValueError, match="K <= number of tokens"):
        _run(model, "dit-tiny", ditcache.ClusCa(clusters=17, warmup=1, interval=3))
