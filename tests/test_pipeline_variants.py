"""``ditcache.cached(pipe, ...)`` on the Flux and Qwen-Image pipelines beyond text-to-image: image-to-image and
inpainting (the schedule starts mid-way, at the scheduler's begin index), Kontext and Edit (reference-image
tokens appended to the sequence), and ControlNet (a second model, not hooked, whose residuals enter the
transformer's blocks). Each is assembled offline from the families' tiny components (``ditcache.pipelines``).

Expected values come from the pipelines themselves: the uncached output, the scheduler's timesteps and begin
index after the call, and the transformer and ControlNet calls counted by this file's own forward pre-hooks.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (in the dev extra: a missing install fails here, never skips)
from PIL import Image

import ditcache

STEPS = 10
STRENGTH = 0.6  # image-to-image and inpainting run the last int(10 * 0.6) = 6 of 10 steps
PROMPT, NEGATIVE = "a red shirt", "a dog"


def _image(size: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


IMAGE, REFERENCE = _image(16, 1), _image(32, 2)
MASK = Image.fromarray(np.tile((np.arange(16) >= 8).astype(np.uint8) * 255, (16, 1)))  # repaint the right half
_CFG = dict(negative_prompt=NEGATIVE, true_cfg_scale=2.0)  # true CFG: a cond, then an uncond call per step
_TEXT = dict(height=16, width=16, max_sequence_length=8)

# How each pipeline is called, and the transformer calls one step makes (from the pipelines' loops).
KWARGS = {
    "flux-img2img": dict(image=IMAGE, strength=STRENGTH, **_TEXT),
    "flux-inpaint": dict(image=IMAGE, mask_image=MASK, strength=STRENGTH, **_TEXT),
    "flux-kontext": dict(image=IMAGE, max_area=16 * 16, _auto_resize=False, **_CFG, **_TEXT),
    "flux-controlnet": dict(control_image=IMAGE, **_CFG, **_TEXT),
    "qwenimage-img2img": dict(image=IMAGE, strength=STRENGTH, **_CFG, **_TEXT),
    "qwenimage-inpaint": dict(image=IMAGE, mask_image=MASK, strength=STRENGTH, **_CFG, **_TEXT),
    "qwenimage-edit": dict(image=REFERENCE, **_CFG, height=32, width=32, max_sequence_length=8),
    "qwenimage-controlnet": dict(control_image=IMAGE, **_CFG, **_TEXT),
}
CALLS_PER_STEP = {name: 2 if "negative_prompt" in kw else 1 for name, kw in KWARGS.items()}
VARIANTS = list(KWARGS)
REFERENCES = ["flux-kontext", "qwenimage-edit"]
CONTROLNETS = ["flux-controlnet", "qwenimage-controlnet"]


@pytest.fixture(autouse=True)
def _small_edit_reference(monkeypatch):
    """QwenImageEditPipeline resizes its reference image to ~1024x1024 (``calculate_dimensions(1024 * 1024,
    ratio)``: 65k reference tokens); here to 32x32, the tiny model's size."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as edit

    real = edit.calculate_dimensions
    monkeypatch.setattr(edit, "calculate_dimensions", lambda area, ratio: real(32 * 32, ratio))


class Watch:
    """A module's calls, seen by a forward pre-hook of this file: the token count of each call's hidden_states."""

    def __init__(self) -> None:
        self.tokens: list[int] = []

    def __call__(self, module, args, kwargs) -> None:
        x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        self.tokens.append(int(x.shape[1]))


@contextmanager
def watching(*modules):
    watches = [Watch() for _ in modules]
    handles = [m.register_forward_pre_hook(w, with_kwargs=True) for m, w in zip(modules, watches)]
    try:
        yield watches
    finally:
        for h in handles:
            h.remove()


def call(name: str, pipe, seed: int = 0, **extra) -> torch.Tensor:
    """One generation; the packed latents (B, N, C)."""
    kw = dict(KWARGS[name], num_inference_steps=STEPS, output_type="latent",
              generator=torch.Generator().manual_seed(seed), **extra)
    return pipe(prompt=PROMPT, **kw).images


def denoising_steps(pipe) -> int:
    """The steps the last call ran, from its scheduler: timesteps from the begin index (img2img starts there)."""
    return len(pipe.scheduler.timesteps) - (pipe.scheduler.begin_index or 0)


def expected_steps(name: str) -> int:
    return int(STEPS * STRENGTH) if "strength" in KWARGS[name] else STEPS


def grouped(stats, steps: int, per_step: int) -> bool:
    """The run's records are ``steps`` steps of ``per_step`` branches, in call order, in one generation."""
    return (len(stats.generations()) == 1
            and [r.step for r in stats.records] == [s for s in range(steps) for _ in range(per_step)]
            and [r.branch for r in stats.records] == list(range(per_step)) * steps)


def patched(module) -> list[str]:
    return [n for n, m in module.named_modules() if "forward" in m.__dict__]


# --------------------------------------------------------------------------- every variant


@pytest.mark.parametrize("name", VARIANTS)
def test_computing_everything_is_bit_identical_to_the_uncached_pipeline(pipes, name):
    pipe = pipes(name)
    with watching(pipe.transformer) as (seen,):
        ref = call(name, pipe)
    steps = denoising_steps(pipe)
    assert steps == expected_steps(name)  # strength 0.6 of 10 steps: begin index 4, 6 steps
    assert len(seen.tokens) == steps * CALLS_PER_STEP[name]
    with ditcache.cached(pipe, ditcache.FORA(interval=1)) as run:
        out = call(name, pipe)
    assert torch.equal(out, ref)
    assert run.num_steps == steps and grouped(run.stats, steps, CALLS_PER_STEP[name])
    assert patched(pipe.transformer) == []
    assert "step" not in pipe.scheduler.__dict__ and "set_timesteps" not in pipe.scheduler.__dict__
    assert torch.equal(call(name, pipe), ref)  # and the pipeline is as it was


@pytest.mark.parametrize("method,action", [(ditcache.FORA(interval=3), "reuse"),
                                           (ditcache.TaylorSeer(interval=3, order=1, warmup=1), "forecast")])
@pytest.mark.parametrize("name", VARIANTS)
def test_reuse_and_forecast_over_the_steps_the_pipeline_runs(pipes, name, method, action):
    """The run's step count is the pipeline's: image-to-image's 6 of 10 steps, not the schedule's 10."""
    pipe = pipes(name)
    with ditcache.cached(pipe, method) as run:
        with watching(pipe.transformer) as (seen,):
            out = call(name, pipe)
    steps = denoising_steps(pipe)
    assert steps == expected_steps(name) and torch.isfinite(out).all()
    summary = run.stats.summary()
    assert int(re.match(r"(\d+) steps", summary).group(1)) == steps == run.stats.steps() == run.num_steps, summary
    assert run.stats.counts()[action] > 0, summary
    assert len(run.stats.records) == len(seen.tokens) and grouped(run.stats, steps, CALLS_PER_STEP[name])


# --------------------------------------------------------------------------- reference-image tokens


@pytest.mark.parametrize("name", REFERENCES)
def test_reference_tokens_join_the_sequence_and_count_no_extra_step(pipes, name):
    """Kontext and Edit append the reference image's latent tokens to the image tokens of every call (and cut the
    prediction back to the target's): the transformer sees both, and each of its calls is one branch of one step,
    cond then uncond, while forecasting."""
    pipe = pipes(name)
    reference = KWARGS[name]["image"]
    grid = pipe.vae_scale_factor * 2  # the VAE's downsampling, then 2x2 packing
    reference_tokens = (reference.height // grid) * (reference.width // grid)
    with ditcache.cached(pipe, ditcache.TaylorSeer(interval=3, order=1, warmup=1)) as run:
        with watching(pipe.transformer) as (seen,):
            out = call(name, pipe)
    steps = denoising_steps(pipe)
    assert reference_tokens > 0 and set(seen.tokens) == {out.shape[1] + reference_tokens}
    assert len(seen.tokens) == len(run.stats.records) == 2 * steps
    assert grouped(run.stats, steps, 2) and run.stats.steps() == steps == STEPS
    assert run.stats.counts()["forecast"] > 0 and torch.isfinite(out).all()


# --------------------------------------------------------------------------- ControlNet


@pytest.mark.parametrize("name", CONTROLNETS)
def test_controlnet_runs_in_full_every_step_and_is_not_hooked(pipes, name):
    """``cached`` hooks the pipeline's ``transformer*`` attributes only: the ControlNet (``pipe.controlnet``) is
    neither hooked nor refused; it runs in full once per step, and its fresh residuals enter the cached
    transformer's blocks (they change the output: a conditioning scale of 0 gives another one)."""
    pipe = pipes(name)
    ref = call(name, pipe)
    assert not torch.equal(call(name, pipe, controlnet_conditioning_scale=0.0), ref)
    transformer_modules = {id(m) for m in pipe.transformer.modules()}
    with ditcache.cached(pipe, ditcache.FORA(interval=3)) as run:
        assert isinstance(run, ditcache.Run)  # one denoiser: the transformer
        assert all(id(s.module) in transformer_modules for s in run.sites) and patched(pipe.transformer)
        assert patched(pipe.controlnet) == [] and not hasattr(pipe.controlnet, "_ditcache_run")
        with watching(pipe.transformer, pipe.controlnet) as (transformer, controlnet):
            out = call(name, pipe)
    steps = denoising_steps(pipe)
    assert len(controlnet.tokens) == steps and len(transformer.tokens) == 2 * steps
    assert grouped(run.stats, steps, 2) and run.stats.counts()["reuse"] > 0 and torch.isfinite(out).all()
    assert patched(pipe.controlnet) == [] and patched(pipe.transformer) == []
