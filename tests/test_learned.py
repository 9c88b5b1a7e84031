"""L2C and TokenCache on a tiny default-model stand-in: reductions to FULL, artifacts and their checks."""

import pytest
import torch
from diffusers import DDIMScheduler

import ditcache
from ditcache.artifact import Artifact
from ditcache.learn.l2c import L2CTrainConfig, cache_pairs, train_l2c
from ditcache.learn.tokencache import TokenCacheTrainConfig, train_tokencache
from ditcache.models.defaults import DiTSpec, FluxSpec, build

STEPS = 6


@pytest.fixture(scope="module")
def tiny_dit():
    torch.manual_seed(0)
    return build("dit", spec=DiTSpec(num_attention_heads=1, attention_head_dim=16, num_layers=2, patch_size=8))


@pytest.fixture(scope="module")
def artifacts(tiny_dit, tmp_path_factory):
    d = tmp_path_factory.mktemp("art")
    l2c, l2c_losses = train_l2c(tiny_dit, L2CTrainConfig(steps=STEPS, iters=6, labels_per_batch=2, batches=1))
    tc, tc_losses = train_tokencache(tiny_dit, TokenCacheTrainConfig(steps=STEPS, iters=6, labels_per_batch=2,
                                                                        batches=1))
    assert len(l2c_losses) == 6 and len(tc_losses) == 6 and all(map(torch.isfinite, torch.tensor(tc_losses)))
    return l2c.save(d / "l2c.safetensors"), tc.save(d / "tc.safetensors")


def _gen(model, method=None, steps=STEPS, **kw):
    return model.generate([1, 2], steps=steps, seed=3, method=method, **kw)


def test_cache_pairs_follow_the_interval():
    assert cache_pairs(6, 2) == [(1, 0), (3, 2), (5, 4)]
    assert cache_pairs(7, 3) == [(1, 0), (2, 0), (4, 3), (5, 3)]


def test_l2c_router_computing_everything_equals_full(tiny_dit, artifacts):
    ref = _gen(tiny_dit)
    out = _gen(tiny_dit, ditcache.L2C(artifact=str(artifacts[0]), threshold=0.0))
    assert torch.equal(out, ref)
    run = tiny_dit.last_run
    assert run.stats.counts()["reuse"] == 0


def test_l2c_router_computing_nothing_reuses_on_cache_steps(tiny_dit, artifacts):
    _gen(tiny_dit, ditcache.L2C(artifact=str(artifacts[0]), threshold=1.0))
    s = tiny_dit.last_run.stats
    assert s.full_steps() == 3 and s.counts()["reuse"] == 3 * len(s.sites)


def test_tokencache_with_every_token_equals_full(tiny_dit, artifacts):
    ref = _gen(tiny_dit)
    out = _gen(tiny_dit, ditcache.TokenCache(artifact=str(artifacts[1]), ratio=1.0, k1=3, k2=3))
    s = tiny_dit.last_run.stats
    assert s.counts()["partial"] > 0 and s.counts()["reuse"] == 0
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_tokencache_two_phase_schedule():
    tc = ditcache.TokenCache(k1=4, k2=2, boundary=0.5)
    full = [s for s in range(21) if tc.full_step(s, 21)]
    assert full == [0, 4, 8, 10, 12, 14, 16, 18, 20]


def test_artifacts_round_trip(artifacts):
    art = Artifact.load(artifacts[0], "l2c")
    again = Artifact.load(art.save(artifacts[0].with_name("copy.safetensors")), "l2c")
    assert torch.equal(art.tensors["theta"], again.tensors["theta"])
    assert (art.fingerprint, art.timesteps, art.sampler, art.config) == (
        again.fingerprint, again.timesteps, again.sampler, again.config)
    assert art.config["steps"] == STEPS and len(art.timesteps) == STEPS


def test_mismatches_give_clear_errors(tiny_dit, artifacts, tmp_path):
    l2c = str(artifacts[0])
    other = build("dit", spec=DiTSpec(num_attention_heads=1, attention_head_dim=16, num_layers=2, patch_size=8))
    with pytest.raises(ValueError, match="trained on model"):
        _gen(other, ditcache.L2C(artifact=l2c))
    with pytest.raises(ValueError, match="trained for 6 steps"):
        _gen(tiny_dit, ditcache.L2C(artifact=l2c), steps=8)
    labels = torch.tensor([1, 2])
    cond, uncond = tiny_dit.conditioning(labels)
    trailing = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", timestep_spacing="trailing")
    from ditcache.sampling import sample
    with ditcache.cached(tiny_dit.transformer, ditcache.L2C(artifact=l2c)):
        with pytest.raises(ValueError, match="another sampler"):
            sample(tiny_dit.transformer, tiny_dit.initial_noise(2, 0), cond, uncond, steps=STEPS,
                   guidance_scale=2.0, scheduler=trailing)
    with pytest.raises(ValueError, match="interval"):
        _gen(tiny_dit, ditcache.L2C(artifact=l2c, interval=3))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="corrupted"):
        _gen(tiny_dit, ditcache.L2C(artifact=str(bad)))
    with pytest.raises(ValueError, match="not a l2c artifact"):
        _gen(tiny_dit, ditcache.L2C(artifact=str(artifacts[1])))
    with pytest.raises(FileNotFoundError, match="train"):
        _gen(tiny_dit, ditcache.L2C(artifact=str(tmp_path / "missing.safetensors")))


def test_learned_methods_train_on_flux():
    torch.manual_seed(0)
    flux = build("flux", spec=FluxSpec(num_attention_heads=1, attention_head_dim=16, num_layers=1,
                                       num_single_layers=1, axes_dims_rope=(4, 6, 6), patch=8))
    art, losses = train_tokencache(flux, TokenCacheTrainConfig(steps=4, iters=3, labels_per_batch=2, batches=1))
    assert art.tensors["tokens"].tolist() == [1, 16, 4, 1]   # joint attn, image MLP, text MLP, single block
    art2, _ = train_l2c(flux, L2CTrainConfig(steps=4, iters=3, labels_per_batch=2, batches=1))
    assert art2.tensors["theta"].shape == (4, 4)


def _router(theta: torch.Tensor, path, tiny_dit, **config) -> str:
    """An L2C artifact with hand-set logits for the tiny model (6 steps, the sampler's timesteps)."""
    real = Artifact.load(path, "l2c")
    art = Artifact("l2c", {"theta": theta}, real.fingerprint, real.timesteps, real.sampler,
                   {**real.config, **config})
    return str(art.save(path.with_name(f"hand_{len(config)}.safetensors")))


def test_l2c_static_graph_at_an_intermediate_threshold(tiny_dit, artifacts):
    """beta = sigmoid(theta): with theta[step, site] = +1 (beta 0.73) or -1 (0.27) and threshold 0.5, the
    cache steps (1, 3, 5: every other step) compute exactly the +1 sites; the full steps compute all."""
    sites = 4  # 2 blocks x (attn1, ff)
    theta = torch.full((STEPS, sites), -1.0)
    theta[1, 0] = theta[3, 1] = theta[3, 3] = theta[5, 2] = 1.0
    path = _router(theta, artifacts[0], tiny_dit)
    _gen(tiny_dit, ditcache.L2C(artifact=path, threshold=0.5))
    got = [r.actions for r in tiny_dit.last_run.stats.records]
    F, R = "full", "reuse"
    assert got == [[F] * 4, [F, R, R, R], [F] * 4, [R, F, R, F], [F] * 4, [R, R, F, R]]
    # without a threshold the artifact's recorded one applies (0.9 here: nothing above it on cache steps)
    path = _router(theta, artifacts[0], tiny_dit, threshold=0.9)
    _gen(tiny_dit, ditcache.L2C(artifact=path))
    assert tiny_dit.last_run.stats.counts()["reuse"] == 3 * sites


def test_tokencache_allocation_bounds_every_sites_compute():
    """Budget = ratio * sum of site FLOPs. Sites: a whole site (cost 40) and two token sites of 4 tokens
    (cost 40 and 20, so 10 and 5 per token). ratio 0.5 -> budget 50. With weight 0.9 the whole site is
    computed (40), leaving 10: the best token, 0.8 at site 1 (10), fits; the next, 0.7 at site 2 (5),
    no longer does. With the whole site below site_threshold, 50 buys site 1's 0.8 (10), site 2's 0.7
    and 0.6 (5 + 5), site 1's 0.5 (10) and site 2's 0.4 (5): 35; then site 1's 0.3 (10) -> 45; then site
    2's 0.2 (5) -> 50."""
    from ditcache.methods.tokencache import TokenCache

    tc = TokenCache(ratio=0.5)
    tc._art = type("A", (), {"tensors": {"cost": torch.tensor([40.0, 40.0, 20.0])}})()
    w = torch.tensor([[0.9, 0, 0, 0], [0.8, 0.5, 0.3, 0.1], [0.7, 0.6, 0.4, 0.2]])
    assert tc._allocate(w, [1, 4, 4]) == ([True, False, False], [0, 1, 0])
    w[0, 0] = 0.4
    assert tc._allocate(w, [1, 4, 4]) == ([False, False, False], [0, 3, 4])


@pytest.fixture(scope="module")
def shipped_dit():
    """A trained model: its branches matter, unlike a random one's (zero-initialised blocks add nothing)."""
    return ditcache.load_default("dit")


def test_training_lowers_the_loss_and_lambda_sparsifies_the_router(shipped_dit):
    """The loss is relative to reusing the cache (pairs differ a lot, so compare medians): it must fall.
    Without a penalty computing always helps, so the betas rise from their start at 0.5; a larger weight
    on mean(beta) must leave fewer branches above 0.5."""
    cfg = dict(steps=10, iters=80, labels_per_batch=2, batches=1)
    loose, losses = train_l2c(shipped_dit, L2CTrainConfig(lam=0.0, **cfg))
    tight, _ = train_l2c(shipped_dit, L2CTrainConfig(lam=2.0, **cfg))
    assert torch.tensor(losses[-20:]).median() < torch.tensor(losses[:20]).median()
    assert float(torch.sigmoid(loose.tensors["theta"][1::2]).mean()) > 0.5
    on = lambda a: float((torch.sigmoid(a.tensors["theta"][1::2]) > 0.5).double().mean())  # noqa: E731
    assert on(tight) < on(loose)


def test_hyca_calibration_and_its_forecast(shipped_dit, tmp_path):
    """The calibration assigns every channel a pool solver; HyCa runs the calibrated schedule (warm-up 2,
    interval 3, TaylorSeer's counter: full at 0, 1, 4, 7 of 10) and, with every channel on 'reuse', equals
    plain reuse on the same full steps."""
    from ditcache.forecast.hyca import POOL
    from ditcache.learn.hyca import HyCaTrainConfig, train_hyca

    art, summary = train_hyca(shipped_dit, HyCaTrainConfig(steps=10, interval=3, warmup=2, labels_per_batch=2))
    assert abs(sum(summary.values()) - 1.0) < 1e-9 and set(summary) == set(POOL)
    solvers = art.tensors["solvers"]
    assert ((solvers >= 0) & (solvers < len(POOL))).all()
    path = art.save(tmp_path / "hyca.safetensors")
    out = shipped_dit.generate([1, 2], steps=10, seed=3, method=ditcache.HyCa(artifact=str(path)))
    full = [r.step for r in shipped_dit.last_run.stats.records if r.actions[0] == "full"]
    assert full == [0, 1, 4, 7] and torch.isfinite(out).all()
    art.tensors["solvers"] = torch.zeros_like(solvers)  # pool index 0 = reuse everywhere
    reuse = art.save(tmp_path / "reuse.safetensors")
    a = shipped_dit.generate([1, 2], steps=10, seed=3, method=ditcache.HyCa(artifact=str(reuse)))

    class Same:  # FORA on HyCa's full steps
        name = "same"

        def validate(self):
            pass

        def plan(self, ctx, sites, store):
            from ditcache.plan import FULL, REUSE
            return [FULL if ctx.step in full else REUSE] * len(sites)

    b = shipped_dit.generate([1, 2], steps=10, seed=3, method=Same())
    assert torch.equal(a, b)
