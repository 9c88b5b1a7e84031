"""Property-based tests: random valid configs never crash, never turn finite outputs non-finite, and always
leave the model as they found it; invalid configs are refused naming the field; a generation that raises
part-way changes nothing about the next one."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ditcache
from ditcache import zoo
from ditcache.forecast import FoCa, HiCache, Taylor
from ditcache.sampling import sample

FAMILIES = ["dit-tiny", "pixart-tiny", "flux-tiny", "sd3-tiny", "wan-tiny", "hunyuan-tiny", "latte-tiny"]
MODELS: dict = {}


def _model(name: str):
    if name not in MODELS:
        MODELS[name] = zoo.build(name)
    return MODELS[name]


forecasters = st.sampled_from([Taylor(), Taylor("newton"), Taylor(units="step"), HiCache(), HiCache(0.3), FoCa(),
                               FoCa("cachedit")])
methods = st.one_of(
    st.builds(ditcache.FORA, interval=st.integers(1, 6), warmup=st.integers(0, 3)),
    st.builds(ditcache.TaylorSeer, interval=st.integers(1, 6), order=st.integers(0, 4), warmup=st.integers(1, 4),
              forecast=forecasters),
    st.builds(ditcache.ToCa, interval=st.integers(1, 5), fresh_ratio=st.floats(0.0, 1.0),
              score=st.sampled_from(["attention", "key_norm", "random"]), order=st.integers(0, 2),
              warmup=st.integers(0, 3), tie_cfg=st.booleans()),
    st.builds(ditcache.ClusCa, interval=st.integers(1, 5), order=st.integers(0, 2), warmup=st.integers(1, 3),
              clusters=st.integers(1, 4), gamma=st.floats(0.0, 1.0), refresh=st.sampled_from(["persist", "step"]),
              distance=st.sampled_from(["l1", "l2"]), max_iters=st.integers(1, 20), frame_wise=st.booleans(),
              forecast=forecasters),
    st.builds(ditcache.SpeCa, order=st.integers(0, 3), warmup=st.integers(1, 3), min_drafts=st.integers(1, 2),
              max_drafts=st.integers(2, 4), threshold=st.floats(0.01, 2.0)),
    st.builds(ditcache.FreqCa, interval=st.integers(1, 5), warmup=st.integers(1, 3), order=st.integers(0, 2),
              cutoff=st.floats(0.0, 1.0)),
)


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(FAMILIES), method=methods, batch=st.integers(1, 3), steps=st.integers(1, 7),
       cfg=st.booleans())
def test_valid_configs_run_and_restore(name, method, batch, steps, cfg):
    model = _model(name)
    noise, cond, uncond = zoo.conditioning(name, batch, seed=steps)
    scale = 3.0 if cfg else 1.0
    ref = sample(model, noise, cond, uncond, steps=steps, guidance_scale=scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # schedules that cache nothing at tiny step counts say so
        with ditcache.cached(model, method) as run:
            out = sample(model, noise, cond, uncond, steps=steps, guidance_scale=scale)
    assert out.shape == ref.shape
    if torch.isfinite(ref).all():
        assert torch.isfinite(out).all()
    assert len(run.stats.generations()) == 1 and run.stats.steps() == steps
    assert [n for n, m in model.named_modules() if "forward" in m.__dict__] == []
    assert not hasattr(model, "_ditcache_run")


INVALID = [
    (ditcache.FORA, "interval", 0), (ditcache.FORA, "warmup", -1),
    (ditcache.TaylorSeer, "order", 5), (ditcache.TaylorSeer, "warmup", 0), (ditcache.TaylorSeer, "interval", 0),
    (ditcache.ToCa, "fresh_ratio", 1.5), (ditcache.ToCa, "score", "magic"), (ditcache.ToCa, "order", -1),
    (ditcache.ClusCa, "clusters", 0), (ditcache.ClusCa, "gamma", 2.0), (ditcache.ClusCa, "refresh", "never"),
    (ditcache.ClusCa, "distance", "cosine"), (ditcache.SpeCa, "min_drafts", 0), (ditcache.SpeCa, "threshold", 0.0),
    (ditcache.FreqCa, "cutoff", 1.5), (ditcache.FreqCa, "interval", 0), (ditcache.TokenCache, "ratio", 1.5),
    (ditcache.L2C, "threshold", -0.5), (ditcache.HyCa, "interval", 0), (ditcache.TaylorSeer, "forecast", "hermite"),
]


@pytest.mark.parametrize("cls,field,value", INVALID)
def test_invalid_configs_are_refused_naming_the_field(cls, field, value):
    with pytest.raises((ValueError, TypeError), match=field):
        cls(**{field: value})


class Boom(RuntimeError):
    pass


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(FAMILIES), method=methods, fail_at=st.integers(0, 5), site=st.integers(0, 100))
def test_a_generation_that_raises_leaves_nothing_behind(name, method, fail_at, site):
    """A site raises at call `fail_at`: the error reaches the caller; the same run's next generation equals
    a fresh run's; leaving the block restores the model."""
    model = _model(name)
    noise, cond, uncond = zoo.conditioning(name, 2, seed=1)
    calls = {"n": 0}

    def explode(module, args, kwargs):
        calls["n"] += 1
        if calls["n"] == fail_at + 1:
            raise Boom("injected")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = ditcache.apply(model, method)
        target = run.sites[site % len(run.sites)].module
        handle = target.register_forward_pre_hook(explode, with_kwargs=True)
        raised = False
        try:
            for _ in range(3):  # the hook fires once per call of the site: it raises in one of these, if ever
                sample(model, noise, cond, uncond, steps=6, guidance_scale=3.0)
        except Boom:
            raised = True
        finally:
            handle.remove()
        # it raised exactly when the site ran fail_at + 1 times (a method caching the site may run it less)
        assert raised == (calls["n"] == fail_at + 1) and calls["n"] <= fail_at + 1
        after = sample(model, noise, cond, uncond, steps=6, guidance_scale=3.0)
        run.remove()
        with ditcache.cached(model, method):
            fresh = sample(model, noise, cond, uncond, steps=6, guidance_scale=3.0)
    assert torch.equal(after, fresh)
    assert [n for n, m in model.named_modules() if "forward" in m.__dict__] == []
