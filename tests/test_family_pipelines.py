"""``ditcache.cached(pipe, ...)`` on the newer families' real diffusers pipelines (Chroma, Sana, Qwen-Image,
Z-Image, FLUX.2 and FLUX.2 Klein, HunyuanVideo 1.5, LTX-2), each assembled offline from tiny random components
(``ditcache.pipelines``). Expected values come from the uncached pipeline and from the pipelines' own loops (how
many transformer calls a step makes), never from ditcache's records of itself.

A family whose transformer ditcache cannot map yet fails here with "cannot map" until its adapter exists.
"""

from __future__ import annotations

import re

import pytest
import torch
import transformers  # noqa: F401  (in the dev extra: a missing install fails here, never skips)

import ditcache

STEPS = 6
PROMPT, NEGATIVE = "a red shirt", "a dog"

# How each family is called with guidance on, and the transformer calls that makes per step:
_IMAGE = dict(height=16, width=16, max_sequence_length=8)
KWARGS = {
    "chroma": dict(negative_prompt=NEGATIVE, guidance_scale=4.0, **_IMAGE),      # cond, then uncond call
    "sana": dict(negative_prompt=NEGATIVE, guidance_scale=4.5, height=32, width=32, max_sequence_length=8,
                 use_resolution_binning=False, complex_human_instruction=None),  # batched CFG
    "qwenimage": dict(negative_prompt=NEGATIVE, true_cfg_scale=4.0, **_IMAGE),   # cond, then uncond call
    "zimage": dict(negative_prompt=NEGATIVE, guidance_scale=4.0, **_IMAGE),      # batched CFG (a list of latents)
    "flux2": dict(guidance_scale=4.0, **_IMAGE),                                  # embedded guidance: one call
    "flux2-klein": dict(guidance_scale=4.0, **_IMAGE),                            # cond, then uncond ("") call
    "hunyuanvideo15": dict(negative_prompt=NEGATIVE, height=16, width=16, num_frames=5),  # the guider: 2 calls
    "ltx2": dict(negative_prompt=NEGATIVE, height=32, width=32, num_frames=5, frame_rate=25.0,
                 max_sequence_length=8),  # batched CFG, then the STG call and the modality-isolation call
}
CALLS_PER_STEP = {"chroma": 2, "sana": 1, "qwenimage": 2, "zimage": 1, "flux2": 1, "flux2-klein": 2,
                  "hunyuanvideo15": 2, "ltx2": 3}
FAMILIES = list(KWARGS)
VIDEO = {"hunyuanvideo15", "ltx2"}


def call(name: str, pipe, *, seed: int = 0, n: int = 1) -> list[torch.Tensor]:
    """One generation of ``n`` images (videos) for PROMPT; returns every output tensor (LTX-2: video and audio)."""
    kw = dict(KWARGS[name], num_inference_steps=STEPS, output_type="pt", generator=torch.Generator().manual_seed(seed))
    if name == "hunyuanvideo15":  # diffusers 0.42 fails on num_videos_per_prompt > 1 (its image_embeds keep batch 1)
        # and its VAE's attention on a batch > 1 (a (B, L, L) mask for (B, 1, L, C) queries): n prompts, latents
        kw.update(prompt=[PROMPT] * n, negative_prompt=[NEGATIVE] * n, output_type="latent")
    else:
        kw.update(prompt=PROMPT, **{"num_videos_per_prompt" if name in VIDEO else "num_images_per_prompt": n})
    out = pipe(**kw)
    return [out.frames, out.audio] if name == "ltx2" else [out.frames if name in VIDEO else out.images]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def grouped(stats, name: str) -> bool:
    """Every generation is STEPS steps of the family's calls per step, in order."""
    per_step = CALLS_PER_STEP[name]
    return all([r.step for r in g.records] == [s for s in range(STEPS) for _ in range(per_step)]
               and [r.branch for r in g.records] == list(range(per_step)) * STEPS for g in stats.generations())


@pytest.mark.parametrize("name", FAMILIES)
def test_computing_everything_is_bit_identical_to_the_uncached_pipeline(pipes, name):
    pipe = pipes(name)
    ref = call(name, pipe)
    with ditcache.cached(pipe, ditcache.FORA(interval=1)) as run:
        out = call(name, pipe)
    assert same(out, ref)
    assert len(run.stats.generations()) == 1 and grouped(run.stats, name)
    assert [n for n, m in pipe.transformer.named_modules() if "forward" in m.__dict__] == []
    assert "step" not in pipe.scheduler.__dict__ and "set_timesteps" not in pipe.scheduler.__dict__
    assert same(call(name, pipe), ref)  # and the pipeline is as it was


@pytest.mark.parametrize("name", FAMILIES)
def test_two_calls_in_one_block_equal_two_fresh_runs(pipes, name):
    """The second call makes two images (another batch size), so state leaking from the first would show."""
    pipe, method = pipes(name), ditcache.TaylorSeer(interval=2, order=1, warmup=1)
    with ditcache.cached(pipe, method) as run:
        a = call(name, pipe, seed=0)
        b = call(name, pipe, seed=1, n=2)
    with ditcache.cached(pipe, method):
        fresh_a = call(name, pipe, seed=0)
    with ditcache.cached(pipe, method):
        fresh_b = call(name, pipe, seed=1, n=2)
    assert same(a, fresh_a) and same(b, fresh_b)
    assert b[0].shape[0] == 2 * a[0].shape[0] and all(torch.isfinite(x).all() for x in b)
    assert len(run.stats.generations()) == 2 and grouped(run.stats, name)


@pytest.mark.parametrize("method,action", [(ditcache.FORA(interval=2), "reuse"),
                                           (ditcache.TaylorSeer(interval=2, order=1), "forecast")])
@pytest.mark.parametrize("name", FAMILIES)
def test_reuse_and_forecast_are_counted(pipes, name, method, action):
    pipe = pipes(name)
    with ditcache.cached(pipe, method) as run:
        out = call(name, pipe)
    assert all(torch.isfinite(x).all() for x in out)
    summary = run.stats.summary()
    assert int(re.match(r"(\d+) steps", summary).group(1)) == STEPS, summary
    assert int(re.search(rf"\b{action} (\d+)", summary).group(1)) > 0, summary
    assert grouped(run.stats, name)


@pytest.mark.parametrize("name", FAMILIES)
def test_clusca_where_the_transformer_has_a_token_path(pipes, name):
    """ClusCa recomputes a few tokens per cluster in the image MLP branches that can run on a token subset; a
    transformer without one is refused, naming why (Z-Image: its MLPs see text and image at once; Sana: its MLP
    is a convolution over the grid, only its attention has a token path)."""
    pipe = pipes(name)
    method = ditcache.ClusCa(interval=2, warmup=1, clusters=2 if name in VIDEO else 4, frame_wise=name in VIDEO)
    with ditcache.cached(pipe, ditcache.NoCache()) as probe:
        token_path = any(s.kind == "mlp" and s.stream == "image" and s.partial for s in probe.sites)
    if not token_path:
        with pytest.raises(ValueError, match="token-subset path|image MLP branches"):
            with ditcache.cached(pipe, method):
                call(name, pipe)
        return
    with ditcache.cached(pipe, method) as run:
        a, b = call(name, pipe, seed=0), call(name, pipe, seed=1)
    with ditcache.cached(pipe, method):
        fresh = call(name, pipe, seed=1)
    assert same(b, fresh) and all(torch.isfinite(x).all() for x in a)
    assert run.stats.counts()["partial"] > 0 and grouped(run.stats, name)
