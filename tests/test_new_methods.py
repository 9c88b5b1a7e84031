"""Issue 27: planning FLOPs counted (k-means, token scores, verification), and the new methods L2P and
MeanCache: exact when they compute everything, their core formulas against hand-derived values, and runs
on tiny models of every mapped family."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import ditcache
from ditcache import tokens as T
from ditcache.artifact import Artifact, fingerprint
from ditcache.engine import flop_counter
from ditcache.learn.l2p import L2PTrainConfig, causal_mask, fit_weight, gram, gram_loss, train_l2p
from ditcache.methods import parse_method
from ditcache.methods.l2p import REFERENCE_SCHEDULES, reference_steps
from ditcache.methods.meancache import mean_velocity_weights
from ditcache.models.defaults import DiTSpec, FluxSpec, build
from ditcache.plan import StepContext, counter_full
from ditcache.store import Store

STEPS = 8


def _randomised(model):
    """A freshly built default zero-initialises its modulation (adaLN-zero): blocks and final layer then give
    nothing, so every cache would look exact. Random weights everywhere make caching show."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.transformer.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    model.transformer.eval()  # (DiT's label embedding drops labels at random in training mode)
    return model


@pytest.fixture(scope="module")
def tiny_dit():
    torch.manual_seed(0)
    return _randomised(build("dit", spec=DiTSpec(num_attention_heads=1, attention_head_dim=16, num_layers=2,
                                                 patch_size=8)))


@pytest.fixture(scope="module")
def tiny_flux():
    torch.manual_seed(0)
    return _randomised(build("flux", spec=FluxSpec(num_attention_heads=1, attention_head_dim=64, num_layers=1,
                                                                   num_single_layers=1)))


def _gen(model, method, labels=(1, 2), steps=STEPS):
    return model.generate(list(labels), steps=steps, seed=3, method=method)


def _dims(model) -> tuple[int, int]:
    """(image tokens N, width D) of a tiny default DiT."""
    cfg = model.transformer.config
    return (cfg.sample_size // cfg.patch_size) ** 2, cfg.num_attention_heads * cfg.attention_head_dim


# ------------------------------------------------------------------ item 1: planning FLOPs


@pytest.mark.parametrize("distance, per_pair_dim", [("l2", 2), ("l1", 3)])
def test_kmeans_flops_by_hand(distance, per_pair_dim):
    """k-means++ seeding makes K distance passes against one seed each, and every iteration one against the K
    centroids: (K + iterations) * B * N * K' * D pair-dimensions, 2 FLOPs each for L2 (one matrix product),
    3 for L1 (difference, absolute value, accumulation)."""
    b, n, d, k, iters = 2, 12, 5, 3, 1
    x = torch.randn(b, n, d, generator=torch.Generator().manual_seed(0))
    with flop_counter() as counter:
        T.kmeans(x, k, max_iters=iters, distance=distance, generator=torch.Generator().manual_seed(1))
    assert counter.get_total_flops() == per_pair_dim * (k * b * n * 1 * d + iters * b * n * k * d)
    with flop_counter() as counter:  # warm-started: no seeding
        T.kmeans(x, k, init=x[:, :k].clone(), max_iters=iters, distance=distance)
    assert counter.get_total_flops() == per_pair_dim * iters * b * n * k * d


def _segments(stats) -> int:
    """Runs of non-full steps that follow a full step and refresh tokens: where labels / scores are computed."""
    out, prev_full = 0, False
    for r in stats.records:
        full = all(a == "full" for a in r.actions)
        out += prev_full and not full and "partial" in r.actions
        prev_full = full
    return out


def test_clusca_planning_flops_equal_the_hand_count(tiny_dit):
    """One k-means iteration per clustering (max_iters=1): 2 B N K D FLOPs, plus k-means++ seeding on the first
    (K passes of 2 B N D); later clusterings start from the last centroids. They are in stats.flops, so the
    FLOP speedup is uncached / (model + planning)."""
    k = 4
    _gen(tiny_dit, ditcache.NoCache())
    ref = tiny_dit.last_run.stats.flops
    _gen(tiny_dit, ditcache.ClusCa(interval=3, warmup=1, clusters=k, max_iters=1))
    s = tiny_dit.last_run.stats
    n, d = _dims(tiny_dit)
    b = 4  # two labels, CFG doubled
    segments = _segments(s)
    assert segments >= 2
    expected = 2 * b * n * d * k + segments * 2 * b * n * k * d
    assert s.plan_flops == expected
    assert s.flops == sum(r.flops for r in s.records) + expected
    assert ref / s.flops == pytest.approx(ref / (sum(r.flops for r in s.records) + expected))


def test_toca_planning_flops_equal_the_hand_count(tiny_dit):
    """Attention scores, once per layer after each full step: the queries' projection (2 B N D D; the keys are
    the full step's own, kept) and, per head, queries times keys (2 B N N d): 2 B N D (D + N) per layer."""
    toca = ditcache.ToCa(interval=3, interval_curve=(1.0, 0.0), sensitive=None, fresh_ratio=0.5,
                         step_curve=(1.0, 0.0), layer_curve=(1.0, 0.0), module_factor=(("attn", 0.0), ("mlp", 1.0)),
                         bonus=0.0, warmup=1)
    _gen(tiny_dit, toca)
    s = tiny_dit.last_run.stats
    n, d = _dims(tiny_dit)
    b, layers = 4, 2
    assert _segments(s) >= 1
    assert s.plan_flops == _segments(s) * layers * 2 * b * n * d * (d + n)


def test_speca_verification_is_planning(tiny_dit):
    """Each check runs the model's last block for real once more: those FLOPs (measured on the uncached
    model's last block) are planning, every check alike; the model call's count leaves them out."""
    _gen(tiny_dit, ditcache.SpeCa(warmup=1, min_drafts=1, max_drafts=3, threshold=1e6))
    s = tiny_dit.last_run.stats
    block, spent = tiny_dit.transformer.transformer_blocks[-1], []
    with flop_counter() as counter:
        pre = block.register_forward_pre_hook(lambda m, a: spent.append(-counter.get_total_flops()))
        post = block.register_forward_hook(lambda m, a, o: spent.append(counter.get_total_flops()))
        try:
            _gen(tiny_dit, None, steps=1)
        finally:
            pre.remove()
            post.remove()
    checks = [r.plan_flops for r in s.records if r.plan_flops]
    assert checks and all(p == sum(spent) for p in checks)
    full = [r.flops for r in s.records if all(a == "full" for a in r.actions)]
    drafts = {r.flops for r in s.records if r.branch == 0 and "full" not in r.actions}
    assert len(drafts) == 1 and drafts.pop() < full[0] - sum(spent)  # a checked draft's call counts no check


def test_fora_plans_for_free(tiny_dit):
    _gen(tiny_dit, ditcache.FORA(interval=2))
    assert tiny_dit.last_run.stats.plan_flops == 0


def test_bench_row_and_report_show_planning():
    from ditcache.bench.report import Row, report_markdown

    rows = [Row("reference", "none", "uncached", gflops_per_image=2.0, flop_speedup=1.0),
            Row("ditcache", "clusca", "clusca", gflops_per_image=0.5, plan_gflops_per_image=0.01, flop_speedup=4.0)]
    report = {"rows": [r.__dict__ for r in rows], "config": {"seeds": 1, "steps": 4, "batch": 1, "repeats": 1,
                                                              "bootstrap": 1},
              "model": "m", "transformer": "T", "processes": 1, "threads": 1, "device": "cpu", "versions": {},
              "flops_include_planning": True}
    text = report_markdown(report)
    assert "plan GFLOPs/img" in text and "| 0.010 |" in text and "included in GFLOPs/img and FLOP x" in text


# ------------------------------------------------------------------ L2P


def test_gram_loss_is_the_reference_loss():
    """The loss from the Gram matrix equals the reference's, computed on the features themselves."""
    g = torch.Generator().manual_seed(0)
    steps, samples, values = 5, 3, 7
    x = torch.randn(samples, steps, values, generator=g, dtype=torch.float64)
    w = torch.randn(steps, steps, generator=g, dtype=torch.float64)
    mask = causal_mask(steps)
    direct = ((torch.matmul(w * mask, x)[:, :-1] - x[:, 1:]) ** 2).mean()
    assert float(gram_loss(w, gram(list(x.transpose(0, 1))), samples * values)) == pytest.approx(float(direct),
                                                                                                 rel=1e-10)


def test_fit_weight_follows_the_reference_training():
    """Adam from the identity on the Gram form takes the same steps as the reference's loop over features."""
    g = torch.Generator().manual_seed(1)
    steps, samples, values = 4, 2, 6
    x = torch.randn(samples, steps, values, generator=g, dtype=torch.float64).cumsum(1)
    mask = causal_mask(steps)
    w = torch.eye(steps, dtype=torch.float64).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=0.01)
    for _ in range(25):
        loss = ((torch.matmul(w * mask, x)[:, :-1] - x[:, 1:]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    ours, losses = fit_weight(gram(list(x.transpose(0, 1))), samples * values, 25, 0.01)
    torch.testing.assert_close(ours, (w * mask).detach().float(), rtol=1e-5, atol=1e-6)
    assert losses[-1] < losses[0]


def test_reference_schedules():
    assert reference_steps(5, 50) == list(REFERENCE_SCHEDULES[5]) and len(reference_steps(5, 50)) == 11
    # 4, 9, 17, 26, 35, 43 at 7/49 of their index: 0.57, 1.29, 2.43, 3.71, 5, 6.14 -> 1, 1, 2, 4, 5, 6
    assert reference_steps(7, 8) == [0, 1, 2, 4, 5, 6] and reference_steps(16, 3) == [0, 1, 2]


def _fake_ctx(step: int, steps: int = 6, timestep: float | None = None) -> StepContext:
    t = float(1000 - 100 * step) if timestep is None else timestep
    return StepContext(step, steps, step / (steps - 1), t, 0, 1, None)


def test_l2p_prediction_by_hand():
    """x_hat(s) = sum_{j < s} W[s - 1, j] x(j), over real and predicted features alike."""
    m = ditcache.L2P(schedule="counter", interval=3, warmup=1)  # full steps 0 and 3 of 6
    assert m.full_steps(6) == [0, 3]
    m._weight = torch.tensor([[0.5, 0, 0, 0, 0, 0], [2.0, -1.0, 0, 0, 0, 0], [0] * 6,
                              [0.5, 0, 0, 1.0, 0, 0], [0] * 6, [0] * 6])
    m._art = SimpleNamespace(check_step=lambda *a: None)
    store, x = Store(), [torch.full((1, 2, 1), v) for v in (4.0, 99.0, 99.0, 8.0, 99.0, 99.0)]
    outs = []
    for s in range(5):
        m.plan(_fake_ctx(s), [], store)
        outs.append(m.final(_fake_ctx(s), store, x[s]))
    assert outs[0] is None and outs[3] is None
    assert float(outs[1][0, 0, 0]) == 2.0                   # 0.5 * 4
    assert float(outs[2][0, 0, 0]) == 6.0                   # 2 * 4 - 1 * 2
    assert float(outs[4][0, 0, 0]) == 10.0                  # 0.5 * 4 + 1 * 8 (step 3 computed)


def test_l2p_trains_runs_and_is_exact_when_computing_everything(tiny_dit, tmp_path):
    art, summary = train_l2p(tiny_dit, L2PTrainConfig(steps=STEPS, iters=20, labels_per_batch=2, batches=1))
    assert len(summary["losses"]) == 20 and summary["losses"][-1] <= summary["losses"][0]
    assert "valid_loss" in summary and torch.equal(art.tensors["weight"], art.tensors["weight"].tril())
    path = art.save(tmp_path / "l2p.safetensors")
    ref = _gen(tiny_dit, None)
    exact = _gen(tiny_dit, ditcache.L2P(artifact=str(path), schedule="counter", interval=1))
    assert torch.equal(exact, ref)
    out = _gen(tiny_dit, parse_method(f"l2p:artifact={path},interval=7,schedule=reference"))  # spread over 8
    s = tiny_dit.last_run.stats
    assert s.full_steps() == len(reference_steps(7, STEPS)) and s.counts()["skip"] > 0
    assert torch.isfinite(out).all() and not torch.equal(out, ref)
    with pytest.raises(ValueError, match="trained"):  # another step count
        _gen(tiny_dit, ditcache.L2P(artifact=str(path)), steps=STEPS + 1)


def test_l2p_settings_are_checked():
    with pytest.raises(ValueError, match="interval"):
        ditcache.L2P(interval=9, schedule="reference")
    with pytest.raises(ValueError, match="schedule"):
        ditcache.L2P(schedule="every")
    assert ditcache.L2P(interval=9).full_steps(12) == [0, 1, 2, 11]


# ------------------------------------------------------------------ MeanCache


def test_mean_velocity_weights_by_hand():
    assert mean_velocity_weights([0, 1, 2]) == [1.0]                               # K = 1: reuse
    assert mean_velocity_weights([0, 1, 2, 3]) == pytest.approx([-0.25, 1.25])     # K = 2, even steps
    assert mean_velocity_weights([0, 1, 2, 3, 4]) == pytest.approx([-2 / 9, 1 / 9, 10 / 9])
    # t -> a t + b leaves them unchanged (sigmas falling from 1, or step indices)
    assert mean_velocity_weights([1.0, 0.9, 0.8, 0.7]) == pytest.approx([-0.25, 1.25])


def test_mean_velocity_weights_equal_the_reference_on_an_euler_trajectory():
    """The reference's estimate from latents, (x_i - x_{i-K}) / (s_i - s_{i-K}) as the span's average velocity,
    equals our weights applied to the velocities, for an Euler sampler on uneven sigmas."""
    g = torch.Generator().manual_seed(0)
    sigmas = [1.0, 0.93, 0.81, 0.7, 0.52, 0.41, 0.2]
    v = [torch.randn(3, generator=g, dtype=torch.float64) for _ in sigmas[:-1]]
    x = [torch.randn(3, generator=g, dtype=torch.float64)]
    for k in range(len(v)):
        x.append(x[-1] + (sigmas[k + 1] - sigmas[k]) * v[k])
    i = 5
    for span in (1, 2, 3, 4):
        i0 = i - span
        denom = sigmas[i] - sigmas[i0]
        jvp = (v[i0] - (x[i] - x[i0]) / denom) / denom
        reference = v[i - 1] - jvp * (sigmas[i + 1] - sigmas[i])
        w = mean_velocity_weights(sigmas[i0: i + 2])
        torch.testing.assert_close(sum(wk * vk for wk, vk in zip(w, v[i0:i])), reference)


def test_meancache_estimates_by_hand():
    """Full steps 0 and 1, then K = 2 on step indices: est(2) = -v0/4 + 5 v1/4, est(3) = -v1/4 + 5 est(2)/4."""
    m = ditcache.MeanCache(full="0/1/5", spans="0/2/2")
    store, x = Store(), [torch.full((1, 2, 1), v) for v in (4.0, 8.0, 99.0, 99.0)]
    outs = []
    for s in range(4):
        m.plan(_fake_ctx(s), [], store)
        outs.append(m.final(_fake_ctx(s), store, x[s]))
    assert outs[0] is None and outs[1] is None
    assert float(outs[2][0, 0, 0]) == -1.0 + 10.0
    assert float(outs[3][0, 0, 0]) == -2.0 + 1.25 * 9.0


def test_meancache_presets_and_settings():
    m = parse_method("meancache:preset=qwen-image-10")
    assert m.full_steps(50) == [0, 1, 3, 7, 14, 21, 28, 35, 42, 49]
    assert [m.span_at(s) for s in (2, 5, 20, 45)] == [2, 1, 1, 4]
    assert len(ditcache.MeanCache.preset("qwen-image-25").full_steps(50)) == 25
    with pytest.raises(ValueError, match="spans"):
        ditcache.MeanCache(full="0/3/6", spans="1/2/3/4")
    with pytest.raises(ValueError, match="span"):
        ditcache.MeanCache(span=7)
    assert ditcache.MeanCache().full_steps(10) == [s for s in range(10) if counter_full(s, 3, 5)]


@pytest.mark.parametrize("units", ["step", "timestep"])
def test_meancache_exact_when_computing_everything_and_runs(tiny_dit, tiny_flux, units):
    for model in (tiny_dit, tiny_flux):
        ref = _gen(model, None)
        assert torch.equal(_gen(model, ditcache.MeanCache(interval=1, units=units)), ref)
        out = _gen(model, ditcache.MeanCache(interval=3, warmup=2, span=2, units=units))
        s = model.last_run.stats
        assert s.counts()["skip"] > 0 and torch.isfinite(out).all()


def test_meancache_memory_is_predicted(tiny_dit):
    """Six values of the final layer's input (its longest span) per branch, nothing per site."""
    from ditcache.sampling import _cfg_batch

    cond, uncond = tiny_dit.conditioning(torch.tensor([1, 2]))
    x = tiny_dit.initial_noise(2, 0)
    inputs = {"hidden_states": torch.cat([x, x]), "timestep": torch.full((4,), 999), **_cfg_batch(cond, uncond, ())}
    predicted = ditcache.estimate_memory(tiny_dit.transformer, ditcache.MeanCache(), inputs, steps=50)
    _gen(tiny_dit, ditcache.MeanCache(), steps=50)
    n, d = _dims(tiny_dit)
    assert predicted["total"] == tiny_dit.last_run.stats.peak_cache_bytes == 6 * 4 * n * d * 4


# ------------------------------------------------------------------ tiny families


def _families() -> dict:
    """test_families' tiny case of every mapped class (tests/ is on the path when pytest runs)."""
    try:
        from test_families import CASES
    except ImportError:  # pragma: no cover
        return {}
    return CASES


CASES = _families()


@pytest.fixture(scope="module")
def built():
    return {}


@pytest.mark.parametrize("name", sorted(CASES))
def test_l2p_and_meancache_on_every_family(name, built, tmp_path):
    """Both run on every mapped class with a final layer (skipping every block on cached steps, exact when all
    steps are full), and are refused by name where the model has none."""
    from test_families import STEPS as FSTEPS
    from test_families import _inputs, _loop, _model

    case, model = CASES[name], _model(built, name)
    kwargs = _inputs(case, model)
    ref = _loop(case, model, kwargs)
    try:
        with ditcache.cached(model, ditcache.NoCache(), steps=FSTEPS, count_flops=False) as run:
            _loop(case, model, kwargs)
        timesteps = [r.timestep for r in run.stats.records]
        art = Artifact("l2p", {"weight": torch.eye(FSTEPS)}, fingerprint(model), timesteps, "none", {})
        path = art.save(tmp_path / "l2p.safetensors")
        for method in (ditcache.MeanCache(interval=3, warmup=1, span=2),
                       ditcache.L2P(artifact=str(path), schedule="counter", interval=3, warmup=1),
                       ditcache.MeanCache(interval=1)):
            with ditcache.cached(model, method, steps=FSTEPS, count_flops=False) as run:
                outs = _loop(case, model, kwargs)
            assert all(o.shape == r.shape and torch.isfinite(o).all() for o, r in zip(outs, ref))
            if method.interval == 1:
                assert all(torch.equal(o, r) for o, r in zip(outs, ref))
            else:
                assert run.stats.counts()["skip"] > 0
    except ValueError as e:
        assert "final layer" in str(e)


# ------------------------------------------------------------------ peers: SeaCache and TextKVCache


def test_sea_sigma_by_hand(tiny_dit, tiny_flux):
    """Flow samplers: t / 1000. DDIM: the flow sigma with DDIM's noise-to-signal ratio, sqrt(1-a) / (sqrt(a) +
    sqrt(1-a)), a the DDPM schedule's alpha-bar (linear betas 1e-4 .. 0.02 over 1000 steps) at t."""
    from ditcache.peers import sea_sigma

    assert sea_sigma(tiny_flux.transformer, 250.0) == 0.25
    betas = torch.linspace(0.0001, 0.02, 1000, dtype=torch.float64)
    a = float(torch.cumprod(1 - betas, 0)[500])
    assert sea_sigma(tiny_dit.transformer, 500.0) == pytest.approx((1 - a) ** 0.5 / (a**0.5 + (1 - a) ** 0.5),
                                                                   rel=1e-5)


def test_seacache_peer_skips_and_removes(tiny_dit, tiny_flux):
    from ditcache.peers import generate_with_peer, make_peer

    for model in (tiny_dit, tiny_flux):
        t = model.transformer
        cond, uncond = model.conditioning(torch.tensor([1, 2]))
        noise = model.initial_noise(2, 0)
        before = {k: v.clone() for k, v in t.state_dict().items()}
        peer = make_peer("seacache", t, {"threshold": 1.0, "max_consecutive_cached": 6}, steps=10)
        try:
            out = generate_with_peer(peer, t, noise, cond, uncond, 10, model.default_guidance_scale)
            assert peer.summary()["skipped_calls"] > 0 and torch.isfinite(out).all()
        finally:
            peer.remove()
        assert all(torch.equal(v, t.state_dict()[k]) for k, v in before.items())
        assert "forward" not in t.__dict__


def test_textkv_peer_is_exact_on_nucleus_and_refused_elsewhere(tiny_dit):
    """diffusers 0.42.1 hooks TextKVCache on NucleusMoE-Image blocks only: exact there, refused by name on DiT."""
    from ditcache.peers import PeerError, make_peer

    with pytest.raises(PeerError, match="TextKVCache.*DiTTransformer2DModel"):
        make_peer("textkv", tiny_dit.transformer, {}, steps=4)
    names = [n for n in CASES if n.startswith("NucleusMoE")]
    if not names:
        pytest.skip("no NucleusMoE-Image tiny case")
    from test_families import BATCH, TIMESTEPS, _inputs

    case = CASES[names[0]]
    model = case.build()
    kwargs = _inputs(case, model)
    ref = [case.call(model, kwargs, t, BATCH) for t in TIMESTEPS[:3]]
    peer = make_peer("textkv", model, {}, steps=3)
    try:
        assert peer.hooked
        assert all(torch.equal(case.call(model, kwargs, t, BATCH), r) for t, r in zip(TIMESTEPS[:3], ref))
    finally:
        peer.remove()


def test_cli_trains_l2p(capsys, tmp_path):
    from ditcache.cli import main

    out = tmp_path / "l2p.safetensors"
    assert main(["train", "l2p", "--model", "dit", "--steps", "4", "--iters", "3", "--threads", "1",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "held-out" in text and f"l2p:artifact={out}" in text
    art = Artifact.load(out, "l2p")
    assert art.tensors["weight"].shape == (4, 4) and art.config["iters"] == 3
    assert main(["train", "l2p", "--model", "dit", "--iters", "0", "--out", str(tmp_path / "x.safetensors")]) == 2
