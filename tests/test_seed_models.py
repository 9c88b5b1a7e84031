"""The seed methods' own architectures at a tiny size: U-ViT and MDT (ditcache.models.uvit, .mdt: written from
their papers and mapped through the public register_block / register_model API) and the Latte video mini
(diffusers' LatteTransformer3DModel, spatial and temporal blocks alternating). Shapes, the exact path, every
registered method, and the default-model path (train, save, load, warm start)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import ditcache
from ditcache import adapters
from ditcache.learn.hyca import HyCaTrainConfig, train_hyca
from ditcache.learn.l2c import L2CTrainConfig, train_l2c
from ditcache.learn.tokencache import TokenCacheTrainConfig, train_tokencache
from ditcache.methods import METHODS
from ditcache.models.defaults import LatteSpec, build, load_default, state_dict
from ditcache.models.mdt import MDT, MDTConfig
from ditcache.models.uvit import UViT, UViTConfig

STEPS = 6
# 32 x 32 pixels in 8 x 8 patches: a 4 x 4 grid of 16 tokens
TINY = {"uvit": UViTConfig(width=32, heads=2, depth=3, patch_size=8),
        "mdt": MDTConfig(width=32, heads=2, encoder_depth=2, decoder_depth=1, side_depth=1, patch_size=8),
        # 2 frames of 32 x 32 pixels in 4 x 4 patches: 8 x 8 tokens per frame (ClusCa's 16 clusters fit in a
        # frame); 1 spatial + 1 temporal block
        "latte": LatteSpec(num_attention_heads=1, attention_head_dim=16, num_layers=1, text_dim=8, patch=4,
                           frames=2, canvas=32, item=12, text_tokens=2)}
CLASSES = {"uvit": "UViT", "mdt": "MDT", "latte": "LatteTransformer3DModel"}


def _tiny(name: str):
    torch.manual_seed(0)
    model = build(name, spec=TINY[name])
    with torch.no_grad():  # off the zero init (MDT's adaLN-Zero would predict exactly 0 everywhere)
        for p in model.transformer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.transformer.eval()
    return model


@pytest.fixture(scope="module")
def tiny():
    return {name: _tiny(name) for name in TINY}


def _l2c(model):
    return train_l2c(model, L2CTrainConfig(steps=STEPS, iters=3, labels_per_batch=2, batches=1), progress=False)[0]


def _tokencache(model):
    return train_tokencache(model, TokenCacheTrainConfig(steps=STEPS, iters=3, labels_per_batch=2, batches=1),
                            progress=False)[0]


def _hyca(model):
    return train_hyca(model, HyCaTrainConfig(steps=STEPS, interval=3, warmup=2, labels_per_batch=2))[0]


def _l2p(model):
    from ditcache.learn.l2p import L2PTrainConfig, train_l2p

    return train_l2p(model, L2PTrainConfig(steps=STEPS, iters=3, labels_per_batch=2, batches=1))[0]


# method name -> a few iterations of its training on a tiny model: every learned method (one with an
# ``artifact`` field) needs an entry
TRAINERS = {"l2c": _l2c, "tokencache": _tokencache, "hyca": _hyca, "l2p": _l2p}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """(model name, method name) -> the method's artifact for the tiny model, trained on first use."""
    d = tmp_path_factory.mktemp("seed-art")
    made: dict = {}

    def get(name: str, method: str, model) -> str:
        if (name, method) not in made:
            if method not in TRAINERS:
                pytest.fail(f"learned method {method!r} has no tiny trainer in TRAINERS")
            made[(name, method)] = str(TRAINERS[method](model).save(d / f"{method}_{name}.safetensors"))
        return made[(name, method)]

    return get


def _gen(model, method=None):
    return model.generate([1, 2], steps=STEPS, seed=3, method=method)


def _image_shape(model) -> tuple[int, ...]:
    """What generate() returns for 2 labels: images (2, 1, 28, 28) or clips (2, F, 1, H, W)."""
    return tuple(model.decode(torch.zeros(model.latent_shape(2))).shape)


def _patched(module) -> list[str]:
    return [n for n, m in module.named_modules() if "forward" in m.__dict__]


def test_shapes_and_sites():
    x = torch.randn(2, 1, 32, 32)
    t, y = torch.tensor([999, 10]), torch.tensor([3, 10])
    uvit = UViT(TINY["uvit"])
    assert uvit(x, t, y).sample.shape == x.shape
    assert uvit(x, 500, y, return_dict=False)[0].shape == x.shape  # a scalar timestep is broadcast
    sites = adapters.find_sites(uvit)
    # 1 in-block, the mid block, 1 out-block; attention and MLP each; the skip linear stays in its block
    assert [s.name for s in sites] == ["in_blocks.0.attn", "in_blocks.0.mlp", "mid_block.attn", "mid_block.mlp",
                                       "out_blocks.0.attn", "out_blocks.0.mlp"]
    seen = []
    hook = uvit.in_blocks[0].attn.register_forward_hook(lambda m, a, o: seen.append(o.shape))
    uvit(x, t, y)
    hook.remove()
    assert seen == [torch.Size([2, 2 + 16, 32])]  # time and label tokens prepended to the 16 patch tokens

    mdt = MDT(TINY["mdt"])
    with torch.no_grad():
        for p in mdt.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    full = mdt(x, t, y).sample
    assert full.shape == x.shape and torch.equal(full, mdt(x, t, y, mask_ratio=0.0).sample)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    masked = mdt(x, t, y, mask_ratio=0.5, generator=g()).sample
    assert masked.shape == x.shape and not torch.allclose(masked, full)
    assert torch.equal(masked, mdt(x, t, y, mask_ratio=0.5, generator=g()).sample)
    names = [s.name for s in adapters.find_sites(mdt)]
    assert names == ["encoder_blocks.0.attn", "encoder_blocks.0.mlp", "encoder_blocks.1.attn",
                     "encoder_blocks.1.mlp", "decoder_blocks.0.attn", "decoder_blocks.0.mlp"]  # no side blocks


@pytest.mark.parametrize("name", sorted(TINY))
def test_exact_path_is_bit_identical(name, tiny):
    model = tiny[name]
    ref = _gen(model)
    assert torch.isfinite(ref).all() and ref.shape == _image_shape(model)
    for method in (ditcache.NoCache(), ditcache.FORA(interval=1)):
        out, run = model.generate([1, 2], steps=STEPS, seed=3, method=method, return_run=True)
        assert torch.equal(out, ref), f"{name}: {method.name} is not exact"
        assert run.stats.counts()["full"] == STEPS * len(run.sites)
    assert _patched(model.transformer) == []


@pytest.mark.parametrize("method_name", sorted(METHODS))
@pytest.mark.parametrize("name", sorted(TINY))
def test_every_method_runs(name, method_name, tiny, artifacts):
    """Every registered method, at its defaults (learned ones with this model's tiny artifact), runs to the
    end with finite images, computes less than everything, and leaves no patch behind."""
    model = tiny[name]
    cls = METHODS[method_name]
    fields = {f.name for f in dataclasses.fields(cls)}
    # a router trained 3 iterations sits near beta 0.5 everywhere: threshold 1 makes its cache steps reuse
    extra = {"threshold": 1.0} if method_name == "l2c" else {}
    method = cls(artifact=artifacts(name, method_name, model), **extra) if "artifact" in fields else cls()
    out, run = model.generate([1, 2], steps=STEPS, seed=3, method=method, return_run=True)
    assert out.shape == _image_shape(model) and torch.isfinite(out).all(), f"{name}: {method_name}"
    if method_name != "none":
        counts = run.stats.counts()
        assert counts["full"] < STEPS * len(run.sites), f"{name}: {method_name} computed everything"
    assert _patched(model.transformer) == []


@pytest.mark.parametrize("name", sorted(TINY))
def test_token_methods_refresh_token_subsets(name, tiny):
    """ToCa's subset path on these blocks: queries from the chosen tokens, keys and values from all."""
    model = tiny[name]
    toca = ditcache.ToCa.preset("opensora") if name == "latte" else ditcache.ToCa(interval=3, fresh_ratio=0.25)
    out, run = model.generate([1, 2], steps=STEPS, seed=3, method=toca, return_run=True)
    assert torch.isfinite(out).all()
    assert run.stats.counts().get("partial", 0) > 0


@pytest.mark.parametrize("name", sorted(TINY))
def test_train_save_load_and_warm_start(name, tmp_path, monkeypatch):
    """The default-model path at the shipped size: two training steps write weights that load_default reads
    back exactly, and --init-from the result copies every tensor."""
    from ditcache.models.train import train_default

    path = train_default(name, steps=2, batch_size=4, out_path=tmp_path / f"{name}.safetensors", log_every=1)
    model = load_default(name, weights_dir=tmp_path)
    assert type(model.transformer).__name__ == CLASSES[name]
    assert _gen(model).shape == _image_shape(model)
    again = train_default(name, steps=1, batch_size=2, out_path=tmp_path / "again.safetensors", log_every=1,
                          init_from=path)
    import json

    warm = json.loads(again.with_suffix(".json").read_text())["training"]["init_from"]
    assert warm["fresh"] == [] and warm["copied"] == len(state_dict(model))  # transformer (and conditioner)


def test_latte_alternates_spatial_and_temporal_blocks(tiny):
    """The STDiT shape: spatial blocks (self-attention, cross-attention to the class "text", MLP) over each
    frame's tokens, temporal blocks (self-attention, MLP) over each position's frames, on a (F, H, W) grid."""
    model = tiny["latte"]
    sites = adapters.find_sites(model.transformer)
    assert [(s.kind, s.role) for s in sites] == [("attn", "spatial"), ("cross_attn", "spatial"), ("mlp", "spatial"),
                                                 ("attn", "temporal"), ("mlp", "temporal")]
    inputs = {"hidden_states": torch.zeros(model.latent_shape(1))}
    assert adapters.token_grid(model.transformer, inputs) == (2, 8, 8)


@pytest.mark.parametrize("name", ["uvit", "mdt"])
def test_lean_rules_match_their_forwards(name, tiny):
    """U-ViT and MDT register lean rules through the public register_block(lean=...): with FORA(3) over 6 steps
    (computed steps 0, 2, 5: the reference's count-down), a block (U-ViT: an out-block, skip linear then
    x + attn + mlp; MDT: a decoder block, x + gate1 * attn + gate2 * mlp) returns on every call exactly what its
    own forward returns, and its norm1 runs on the computed calls only; the images are bit-identical with the
    rule on and off (the same operations in the same order)."""
    model = tiny[name]
    block = model.transformer.out_blocks[0] if name == "uvit" else model.transformer.decoder_blocks[0]
    assert adapters.lean_rule(block) is not None and getattr(block, "skip_linear", block) is not None
    calls: list[int] = []
    outs: list = []
    handles = [block.norm1.register_forward_hook(lambda *a: calls.append(1)),
               block.register_forward_hook(lambda m, a, out: outs.append(out))]
    images, norm_calls, per_call = {}, {}, {}
    try:
        for on in (True, False):
            calls.clear()
            outs.clear()
            with ditcache.cached(model.transformer, ditcache.FORA(interval=3), steps=STEPS) as run:
                run.executor.lean = on
                images[on] = _gen(model)
            norm_calls[on], per_call[on] = len(calls), list(outs)
            computed = sorted({r.step for r in run.stats.records if "full" in r.actions})
    finally:
        for h in handles:
            h.remove()
    assert computed == [0, 2, 5]
    model_calls = len(per_call[False])
    assert model_calls % STEPS == 0 and norm_calls == {True: model_calls // STEPS * 3, False: model_calls}
    assert all(torch.equal(a, b) for a, b in zip(per_call[True], per_call[False]))
    assert torch.equal(images[True], images[False])
    assert not torch.equal(images[True], _gen(model))  # the blocks did reuse: the comparison is not vacuous


@pytest.mark.parametrize("name", sorted(TINY))
def test_the_shipped_default_loads_offline_and_generates(name):
    """The shipped weights (float16 on disk) load into float32 modules of the class the card names, in eval
    mode, and two-step generation is deterministic per seed with the default's output shape."""
    model = load_default(name)
    assert type(model.transformer).__name__ == CLASSES[name]
    assert {p.dtype for p in model.transformer.parameters()} == {torch.float32}
    assert not model.transformer.training
    out = model.generate([1, 8], steps=2, seed=0)
    want = (2, model.spec.frames, 1, model.spec.canvas, model.spec.canvas) if name == "latte" else (2, 1, 28, 28)
    assert out.shape == want and torch.isfinite(out).all()
    assert torch.equal(out, model.generate([1, 8], steps=2, seed=0))
    assert not torch.equal(out, model.generate([1, 8], steps=2, seed=1))
