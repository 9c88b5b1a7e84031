"""torch.compile: ditcache's decisions stay out of the graphs, so steps and generations do not recompile."""

from __future__ import annotations

import pytest
import torch

import ditcache
from ditcache import zoo
from ditcache.sampling import sample


@pytest.mark.parametrize("method", [ditcache.FORA(interval=2),
                                    ditcache.ToCa(fresh_ratio=0.5, interval=2, step_curve=(1.0, 0.0)),
                                    ditcache.ClusCa(interval=2, warmup=1, clusters=3)])
def test_compiled_model_does_not_recompile_after_the_first_generation(method):
    """Graphs are counted by torch's own dynamo counters. The 'aot_eager' backend traces and guards exactly
    as inductor does (recompilation is decided by dynamo's guards), without inductor's C++ build time."""
    import torch._dynamo.utils as dynamo_utils

    torch._dynamo.reset()
    model = zoo.build("dit-tiny")
    noise, cond, uncond = zoo.conditioning("dit-tiny", 2)
    with ditcache.cached(model, method):
        eager = sample(model, noise, cond, uncond, steps=6, guidance_scale=3.0)
    compiled = torch.compile(model, backend="aot_eager")
    with ditcache.cached(compiled, method) as run:
        first = sample(compiled, noise, cond, uncond, steps=6, guidance_scale=3.0)
        graphs = dynamo_utils.counters["stats"]["unique_graphs"]
        again = [sample(compiled, noise, cond, uncond, steps=6, guidance_scale=3.0) for _ in range(2)]
        assert dynamo_utils.counters["stats"]["unique_graphs"] == graphs > 0  # compiled once, never again
    assert len(run.stats.generations()) == 3
    for out in (first, *again):
        torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-5)
    assert [n for n, m in model.named_modules() if "forward" in m.__dict__] == []
