"""Cache-memory prediction against the bytes a run actually holds; the cap; half precision."""

from __future__ import annotations

import warnings

import pytest
import torch

import ditcache
from ditcache import zoo
from ditcache.forecast import FoCa
from ditcache.sampling import _cfg_batch, family, sample

METHODS = [ditcache.FORA(), ditcache.TaylorSeer(interval=3, order=2), ditcache.TaylorSeer(forecast=FoCa()),
           ditcache.TaylorSeer(forecast=FoCa(slope="cachedit")),
           ditcache.ToCa(fresh_ratio=0.5, step_curve=(1.0, 0.0)),
           ditcache.ToCa(fresh_ratio=0.5, step_curve=(1.0, 0.0), reuse_keys=False), ditcache.ClusCa(clusters=2),
           ditcache.ClusCa(clusters=2, frame_wise=True, refresh="step"), ditcache.FreqCa(), ditcache.SpeCa(),
           ditcache.NoCache()]


def _call_inputs(model, name: str, batch: int):
    """One CFG call's kwargs (the doubled batch), as our sampler makes them."""
    noise, cond, uncond = zoo.conditioning(name, batch)
    fam = family(model)
    inputs = {**_cfg_batch(cond, uncond, fam.unbatched), **dict(fam.fixed)}
    inputs["hidden_states"] = torch.cat([noise, noise]).to(next(model.parameters()).dtype)
    inputs["timestep"] = torch.full((2 * batch,), 500.0 * fam.timestep_scale)
    return inputs, noise, cond, uncond


@pytest.mark.parametrize("name", ["dit-tiny", "flux-tiny", "wan-tiny", "latte-tiny"])
@pytest.mark.parametrize("method", METHODS, ids=lambda m: ditcache.methods.describe(m))
def test_predicted_bytes_match_what_the_run_holds(name, method):
    model = zoo.build(name)
    inputs, noise, cond, uncond = _call_inputs(model, name, 2)
    predicted = ditcache.estimate_memory(model, method, inputs, steps=12)
    assert predicted["total"] == sum(v for k, v in predicted.items() if k != "total")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ditcache.cached(model, method) as run:
            sample(model, noise, cond, uncond, steps=12, guidance_scale=3.0)
    measured = run.stats.peak_cache_bytes
    assert predicted["total"] == measured  # ToCa's per-layer token scores and staleness counts included
    assert run.predicted_bytes["total"] == pytest.approx(predicted["total"], rel=0.05)  # the run's own check


def test_a_cap_below_the_prediction_is_refused_after_the_first_step():
    model = zoo.build("dit-tiny")
    inputs, noise, cond, uncond = _call_inputs(model, "dit-tiny", 2)
    need = ditcache.estimate_memory(model, ditcache.TaylorSeer(order=2), inputs, steps=8)["total"]
    with pytest.raises(MemoryError, match="max_cache_bytes.*lower forecast order"):
        with ditcache.cached(model, ditcache.TaylorSeer(order=2), max_cache_bytes=need // 2) as run:
            sample(model, noise, cond, uncond, steps=8, guidance_scale=3.0)
    assert len(run.stats.records) == 1  # refused before the second step
    assert [n for n, m in model.named_modules() if "forward" in m.__dict__] == []
    with ditcache.cached(model, ditcache.TaylorSeer(order=2), max_cache_bytes=need):
        sample(model, noise, cond, uncond, steps=8, guidance_scale=3.0)


def test_bf16_model_on_the_cpu():
    """A bf16 model (slow on CPUs without bf16 units, but correct): outputs stay bf16 and finite, TaylorSeer
    forecasts from float32 differences, and the prediction counts outputs at 2 bytes and differences at 4.
    10 steps, warm-up 2, interval 3: full steps 0, 1, 4, 7, so three differences are reached (not four)."""
    model = zoo.build("dit-tiny").to(torch.bfloat16)
    inputs, noise, cond, uncond = _call_inputs(model, "dit-tiny", 1)
    method = ditcache.TaylorSeer(interval=3, order=4, warmup=2)
    predicted = ditcache.estimate_memory(model, method, inputs, steps=10)["total"]
    noise = noise.to(torch.bfloat16)
    ref = sample(model, noise, cond, uncond, steps=10, guidance_scale=3.0)
    with ditcache.cached(model, method) as run:
        out = sample(model, noise, cond, uncond, steps=10, guidance_scale=3.0)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    history = next(iter(run.store.entries.values())).history if run.store.entries else None
    assert history is None  # the store is dropped when the block ends
    assert abs(predicted - run.stats.peak_cache_bytes) <= 0.05 * run.stats.peak_cache_bytes
    # 4 sites x batch 2 (CFG) x 16 tokens x 16 channels: one bf16 output (2 B) and three float32 differences (4 B)
    assert predicted == 4 * 2 * 16 * 16 * (2 + 3 * 4)
    with ditcache.cached(model, ditcache.TaylorSeer(interval=1, order=4, warmup=1)):  # computes every step
        assert torch.equal(sample(model, noise, cond, uncond, steps=10, guidance_scale=3.0), ref)
