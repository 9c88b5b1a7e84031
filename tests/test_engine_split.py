"""The executor's guard: a site that runs twice in one model call is an error, not a silent cache hit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ditcache
from ditcache import adapters


class _TwiceFFBlock(nn.Module):
    """A block that calls its MLP child twice: one (branch, site) key cannot hold both outputs."""

    def __init__(self, d):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x, t):
        x = x + self.ff(self.norm(x) * (1 + t))
        return x + self.ff(self.norm(x))


class _TwiceFFModel(nn.Module):
    def __init__(self, d=8, depth=2):
        super().__init__()
        self.transformer_blocks = nn.ModuleList(_TwiceFFBlock(d) for _ in range(depth))

    def forward(self, x, timestep):
        t = timestep.float().reshape(-1, 1, 1) / 1000
        for b in self.transformer_blocks:
            x = b(x, t)
        return x


@pytest.fixture
def registered():
    """Register ``_TwiceFFBlock`` for one test; the registry is global, so take it out again."""
    def register(*branches, **kw):
        ditcache.register_block(_TwiceFFBlock, *branches, **kw)

    try:
        yield register
    finally:
        adapters.BLOCKS.pop(_TwiceFFBlock.__name__, None)


def _patched(model):
    return [name for name, m in model.named_modules() if "forward" in m.__dict__]


def test_site_called_twice_in_one_call_raises(registered):
    registered(ditcache.Branch("ff", "mlp", "tokens"))
    model = _TwiceFFModel().eval()
    x = torch.randn(2, 5, 8)
    with torch.no_grad(), ditcache.cached(model, ditcache.FORA(interval=2), steps=3):
        with pytest.raises(RuntimeError, match=r"site transformer_blocks\.0\.ff ran twice in one model call"):
            model(x, timestep=torch.full((2,), 900))
    assert _patched(model) == [] and not hasattr(model, "_ditcache_run")


def test_module_shared_between_blocks_raises(registered):
    registered(ditcache.Branch("ff", "mlp", "tokens"))
    model = _TwiceFFModel().eval()
    model.transformer_blocks[1].forward = lambda x, t: x + model.transformer_blocks[1].ff(x)  # once per block
    model.transformer_blocks[0].forward = lambda x, t: x + model.transformer_blocks[0].ff(x)
    model.transformer_blocks[1].ff = model.transformer_blocks[0].ff  # one module, two sites
    with torch.no_grad(), ditcache.cached(model, ditcache.FORA(interval=2), steps=3):
        with pytest.raises(RuntimeError, match="ran twice in one model call"):
            model(torch.randn(2, 5, 8), timestep=torch.full((2,), 900))


def test_whole_block_site_is_the_way_out(registered):
    """The error's advice works: the same block mapped as one whole-block site caches, and computing every
    step is bit-identical to the uncached model."""
    registered(ditcache.Branch("", "block"), outputs=("x",))
    model = _TwiceFFModel().eval()
    x = torch.randn(2, 5, 8)
    ts = [torch.full((2,), t) for t in (900, 500, 100)]
    with torch.no_grad():
        ref = [model(x, t) for t in ts]
        with ditcache.cached(model, ditcache.FORA(interval=1), steps=3):
            same = [model(x, t) for t in ts]
        with ditcache.cached(model, ditcache.FORA(interval=2), steps=3) as run:
            for t in ts:
                model(x, t)
    assert all(torch.equal(a, b) for a, b in zip(ref, same))
    assert [s.name for s in run.sites] == ["transformer_blocks.0", "transformer_blocks.1"]
    assert run.stats.counts()["reuse"] > 0
