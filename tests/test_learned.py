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
