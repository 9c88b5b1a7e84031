"""The path users type: ``with ditcache.cached(pipe, method):`` on real diffusers pipelines.

Every pipeline is assembled offline from tiny random components (``ditcache.pipelines``). Expected
values come from the pipelines themselves (the uncached output, the scheduler's own timesteps) and from
the references' schedules written out here, never from ditcache's records of itself.
"""

from __future__ import annotations

import diffusers as D
import pytest
import torch

import ditcache

PIPES = ["dit", "pixart", "flux", "sd3", "wan"]  # (video pipelines: test_video_pipelines)
STEPS = 6
_FLOW = dict(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def call(name: str, pipe, *, cfg: bool = True, seed: int = 0, n: int = 1, steps: int = STEPS, **extra):
    """One pipeline call with the family's own way of asking for CFG and several images; returns the output."""
    g = torch.Generator().manual_seed(seed)
    if name == "dit":  # class-conditional: n images = n labels; CFG iff guidance_scale > 1
        return pipe(class_labels=list(range(n)), num_inference_steps=steps, guidance_scale=4.0 if cfg else 1.0,
                    generator=g, output_type="pt", **extra).images
    per_prompt = "num_videos_per_prompt" if name == "wan" else "num_images_per_prompt"
    kw = dict(num_inference_steps=steps, output_type="pt", generator=g, **{per_prompt: n}, **extra)
    kw.setdefault("max_sequence_length", 8)
    if name != "wan" and "image" not in extra:
        kw.update(height=16, width=16)
    if name == "pixart":  # batched CFG
        return pipe("a red shirt", guidance_scale=4.5 if cfg else 1.0, clean_caption=False,
                    use_resolution_binning=False, **kw).images
    if name == "flux":    # true CFG: two transformer calls per step (cond, then uncond)
        return pipe("a red shirt", negative_prompt="a dog", true_cfg_scale=2.0 if cfg else 1.0, **kw).images
    if name == "sd3":     # batched CFG
        return pipe("a red shirt", guidance_scale=4.0 if cfg else 1.0, **kw).images
    if name == "wan":     # separate cond / uncond calls; 32x32 so the latent grid has 2x2x2 = 8 tokens
        kw.setdefault("height", 32)
        kw.setdefault("width", 32)
        return pipe("a red shirt", guidance_scale=4.0 if cfg else 1.0, num_frames=5, **kw).frames
    raise KeyError(name)


def branches_per_step(name: str, cfg: bool) -> int:
    """Flux's true CFG and Wan's CFG call the transformer twice per step; the others batch CFG."""
    return 2 if cfg and name in ("flux", "wan") else 1


def methods(name: str) -> dict:
    preset = {"dit": "dit", "pixart": "pixart", "flux": "flux"}.get(name)
    toca = (ditcache.ToCa.preset(preset, interval=2, fresh_ratio=0.3, step_curve=(1.0, 0.0)) if preset
            else ditcache.ToCa(interval=2, fresh_ratio=0.3, step_curve=(1.0, 0.0)))
    return {
        "none": ditcache.NoCache(),
        "fora": ditcache.FORA(interval=2),
        "taylorseer": ditcache.TaylorSeer(interval=2, order=1, warmup=1),
        "toca": toca,
        "clusca": ditcache.ClusCa(interval=2, warmup=1, clusters=4),
    }


def fora_full_steps(num_steps: int, interval: int) -> list[int]:
    """FORA's reference rule, counted down: s == T-1 or s % N == 0, with s = T - 1 - step."""
    return [i for i in range(num_steps) if i == 0 or (num_steps - 1 - i) % interval == 0]


def full_steps(stats) -> list[int]:
    return [r.step for r in stats.records if r.branch == 0 and all(a == "full" for a in r.actions)]


# --------------------------------------------------------------------------- bit-identity


@pytest.mark.parametrize("cfg", [True, False])
@pytest.mark.parametrize("name", PIPES)
def test_computing_everything_is_bit_identical_to_the_uncached_pipeline(pipes, name, cfg):
    pipe = pipes(name)
    ref = call(name, pipe, cfg=cfg)
    for method in (ditcache.NoCache(), ditcache.FORA(interval=1)):
        with ditcache.cached(pipe, method) as run:
            out = call(name, pipe, cfg=cfg)
        assert torch.equal(out, ref), (name, method)
        assert len(run.stats.records) == STEPS * branches_per_step(name, cfg)
    assert [n for n, m in pipe.transformer.named_modules() if "forward" in m.__dict__] == []
    assert "step" not in pipe.scheduler.__dict__ and "set_timesteps" not in pipe.scheduler.__dict__


# --------------------------------------------------------------------------- every method, two calls per block


@pytest.mark.parametrize("cfg", [True, False])
@pytest.mark.parametrize("method", ["none", "fora", "taylorseer", "toca", "clusca"])
@pytest.mark.parametrize("name", PIPES)
def test_two_calls_in_one_block_equal_two_fresh_runs(pipes, name, method, cfg):
    """The second call asks for two images per prompt (another batch size), so any state leaking from
    the first call would show; each call must also be grouped into STEPS steps of the right branches."""
    pipe, m = pipes(name), methods(name)[method]
    with ditcache.cached(pipe, m) as run:
        a = call(name, pipe, cfg=cfg, seed=0)
        b = call(name, pipe, cfg=cfg, seed=1, n=2)
    with ditcache.cached(pipe, m):
        fresh_a = call(name, pipe, cfg=cfg, seed=0)
    with ditcache.cached(pipe, m):
        fresh_b = call(name, pipe, cfg=cfg, seed=1, n=2)
    assert torch.equal(a, fresh_a) and torch.equal(b, fresh_b)
    assert b.shape[0] == 2 * a.shape[0] and torch.isfinite(b).all()
    gens = run.stats.generations()
    assert len(gens) == 2
    per_step = branches_per_step(name, cfg)
    for g in gens:
        assert [r.step for r in g.records] == [s for s in range(STEPS) for _ in range(per_step)]
        assert [r.branch for r in g.records] == list(range(per_step)) * STEPS
    if method != "none":  # the method did cache something
        counts = run.stats.counts()
        assert counts["reuse"] + counts["forecast"] + counts["partial"] > 0


# --------------------------------------------------------------------------- schedulers


SCHEDULERS = {
    "dit": {"ddim": None, "dpm": D.DPMSolverMultistepScheduler, "euler": D.EulerDiscreteScheduler,
            "heun": D.HeunDiscreteScheduler, "unipc": D.UniPCMultistepScheduler},
    "pixart": {"dpm": None, "ddim": D.DDIMScheduler, "euler": D.EulerDiscreteScheduler,
               "heun": D.HeunDiscreteScheduler, "unipc": D.UniPCMultistepScheduler},
    "flux": {"euler": None, "unipc": lambda: D.UniPCMultistepScheduler(**_FLOW)},
    "sd3": {"euler": None, "heun": D.FlowMatchHeunDiscreteScheduler,
            "dpm": lambda: D.DPMSolverMultistepScheduler(**_FLOW), "unipc": lambda: D.UniPCMultistepScheduler(**_FLOW)},
    "wan": {"euler": None, "heun": D.FlowMatchHeunDiscreteScheduler,
            "dpm": lambda: D.DPMSolverMultistepScheduler(**_FLOW), "unipc": lambda: D.UniPCMultistepScheduler(**_FLOW)},
}
# Heun evaluates the model 2N - 1 times for N steps: each evaluation is a caching step of its own.
MODEL_CALLS = {"heun": 2 * STEPS - 1}


def _scheduler(pipe, kind):
    if kind is None:
        return pipe.scheduler
    if isinstance(kind, type):  # a class: from the pipeline's config, as users swap schedulers
        return kind.from_config(pipe.scheduler.config)
    return kind()


@pytest.mark.parametrize("name,sched", [(n, s) for n in PIPES for s in SCHEDULERS[n]])
def test_schedulers(pipes, name, sched):
    pipe = pipes(name)
    default = pipe.scheduler
    pipe.scheduler = _scheduler(pipe, SCHEDULERS[name][sched])
    try:
        ref = call(name, pipe, cfg=False)
        calls = MODEL_CALLS.get(sched, STEPS)
        assert len(pipe.scheduler.timesteps) == calls
        with ditcache.cached(pipe, ditcache.FORA(interval=1)):
            assert torch.equal(call(name, pipe, cfg=False), ref)
        with ditcache.cached(pipe, ditcache.FORA(interval=2)) as run:
            out = call(name, pipe, cfg=False)
        assert [r.step for r in run.stats.records] == list(range(calls))
        assert full_steps(run.stats) == fora_full_steps(calls, 2)
        assert torch.isfinite(out).all()
        with ditcache.cached(pipe, ditcache.TaylorSeer(interval=3, order=2, warmup=2)) as run:
            out = call(name, pipe, cfg=False)
        # TaylorSeer's counter rule over the model calls: 0, 1 (warm-up), then every 3rd step after step 1;
        # forecast between (exact forecast values under Heun, UniPC and DPM: tests/test_calling_patterns.py)
        full = [s for s in range(calls) if s < 2 or (s - 1) % 3 == 0]
        assert [r.step for r in run.stats.records] == list(range(calls))
        assert full_steps(run.stats) == full
        assert all(set(r.actions) == {"forecast"} for r in run.stats.records if r.step not in full)
        assert torch.isfinite(out).all()
    finally:
        pipe.scheduler = default


def test_scheduler_swapped_inside_the_block_is_followed(pipes):
    pipe = pipes("dit")
    default = pipe.scheduler
    try:
        with ditcache.cached(pipe, ditcache.FORA(interval=2)) as run:
            call("dit", pipe, cfg=False)
            pipe.scheduler = D.HeunDiscreteScheduler.from_config(default.config)
            call("dit", pipe, cfg=False)
        first, second = run.stats.generations()
        assert len(first.records) == STEPS and len(second.records) == 2 * STEPS - 1
        assert "step" not in pipe.scheduler.__dict__ and "step" not in default.__dict__
    finally:
        pipe.scheduler = default


# --------------------------------------------------------------------------- custom schedules, img2img


@pytest.mark.parametrize("name,kwargs", [
    ("pixart", {"timesteps": [999, 750, 500, 250]}),
    ("flux", {"sigmas": [1.0, 0.8, 0.6, 0.4, 0.2]}),
    ("sd3", {"sigmas": [1.0, 0.7, 0.4]}),
])
def test_custom_timesteps_and_sigmas(pipes, name, kwargs):
    pipe = pipes(name)
    n = len(next(iter(kwargs.values())))
    ref = call(name, pipe, cfg=False, **kwargs)
    with ditcache.cached(pipe, ditcache.FORA(interval=1)):
        assert torch.equal(call(name, pipe, cfg=False, **kwargs), ref)
    with ditcache.cached(pipe, ditcache.FORA(interval=2)) as run:
        call(name, pipe, cfg=False, **kwargs)
    assert len(run.stats.records) == n
    assert full_steps(run.stats) == fora_full_steps(n, 2)


@pytest.mark.parametrize("name,cls", [("flux", "FluxImg2ImgPipeline"), ("sd3", "StableDiffusion3Img2ImgPipeline")])
def test_image_to_image_starts_mid_schedule(pipes, name, cls):
    """strength 0.5 of 6 steps runs the last 3: the generation is those 3 steps, and step 0 of the
    generation (the scheduler's begin index) is computed in full."""
    img2img = getattr(D, cls)(**{k: v for k, v in pipes(name).components.items()})
    img2img.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    kw = dict(image=image, strength=0.5, height=16, width=16)
    ref = call(name, img2img, cfg=False, **kw)
    with ditcache.cached(img2img, ditcache.FORA(interval=1)):
        assert torch.equal(call(name, img2img, cfg=False, **kw), ref)
    with ditcache.cached(img2img, ditcache.FORA(interval=2)) as run:
        out = call(name, img2img, cfg=False, **kw)
    assert [r.step for r in run.stats.records] == [0, 1, 2]
    assert full_steps(run.stats) == [0, 2]
    assert torch.isfinite(out).all()


# --------------------------------------------------------------------------- callbacks and interruption


@pytest.mark.parametrize("name", ["flux", "sd3", "wan"])  # PixArtSigmaPipeline has the older `callback` only
def test_callback_on_step_end(pipes, name):
    pipe = pipes(name)
    seen: list[int] = []

    def shrink(p, i, t, kwargs):  # edits the latents the next step sees
        seen.append(i)
        return {"latents": kwargs["latents"] * 0.95}

    ref = call(name, pipe, cfg=False, callback_on_step_end=shrink)
    with ditcache.cached(pipe, ditcache.FORA(interval=1)):
        out = call(name, pipe, cfg=False, callback_on_step_end=shrink)
    assert torch.equal(out, ref)
    assert seen == list(range(STEPS)) * 2


@pytest.mark.parametrize("name", ["flux", "sd3", "wan"])
def test_interrupted_generation_leaves_nothing_behind(pipes, name):
    pipe = pipes(name)

    def stop_at_2(p, i, t, kwargs):
        if i == 2:
            p._interrupt = True
        return {}

    method = ditcache.TaylorSeer(interval=2, order=1, warmup=1)
    with ditcache.cached(pipe, method) as run:
        call(name, pipe, cfg=True, callback_on_step_end=stop_at_2)
        after = call(name, pipe, cfg=True, seed=5)
    with ditcache.cached(pipe, method):
        fresh = call(name, pipe, cfg=True, seed=5)
    assert torch.equal(after, fresh)
    interrupted, full = run.stats.generations()
    per_step = branches_per_step(name, True)
    assert len(interrupted.records) == 3 * per_step and len(full.records) == STEPS * per_step


class _PipelineModel:
    """The DiT pipeline's transformer as the learned methods' trainers see a model: conditioning for class
    labels, noise, and its CFG scale (the pipeline's default DDIM schedule is the sampler's)."""

    def __init__(self, pipe):
        self.transformer = pipe.transformer
        self.default_guidance_scale = 4.0

    def conditioning(self, labels):
        labels = torch.as_tensor(labels)
        return {"class_labels": labels}, {"class_labels": torch.full_like(labels, 1000)}

    def initial_noise(self, batch, seed):
        return torch.randn((batch, 4, 8, 8), generator=torch.Generator().manual_seed(seed))


def test_learned_methods_on_the_dit_pipeline(pipes, tmp_path):
    """Artifacts trained on the pipeline's own transformer and sampler fit the pipeline: L2C, TokenCache and
    HyCa run inside `cached(pipe, ...)`, and a router that computes everything is bit-identical."""
    from ditcache.learn.hyca import HyCaTrainConfig, train_hyca
    from ditcache.learn.l2c import L2CTrainConfig, train_l2c
    from ditcache.learn.tokencache import TokenCacheTrainConfig, train_tokencache

    pipe = pipes("dit")
    model = _PipelineModel(pipe)
    l2c, _ = train_l2c(model, L2CTrainConfig(steps=STEPS, iters=4, labels_per_batch=2, batches=1))
    tc, _ = train_tokencache(model, TokenCacheTrainConfig(steps=STEPS, iters=4, labels_per_batch=2, batches=1))
    hy, _ = train_hyca(model, HyCaTrainConfig(steps=STEPS, interval=2, warmup=1, labels_per_batch=2))
    paths = [a.save(tmp_path / f"{a.method}.safetensors") for a in (l2c, tc, hy)]
    ref = call("dit", pipe)
    with ditcache.cached(pipe, ditcache.L2C(artifact=str(paths[0]), threshold=0.0)):
        assert torch.equal(call("dit", pipe), ref)
    for method in (ditcache.L2C(artifact=str(paths[0]), threshold=1.0),
                   ditcache.TokenCache(artifact=str(paths[1]), ratio=0.3, k1=2, k2=2),
                   ditcache.HyCa(artifact=str(paths[2]))):
        with ditcache.cached(pipe, method) as run:
            out = call("dit", pipe)
        counts = run.stats.counts()
        assert torch.isfinite(out).all() and counts["reuse"] + counts["forecast"] + counts["partial"] > 0


def _video_call(name: str, pipe, seed: int = 0, **extra):
    kw = dict(num_inference_steps=STEPS, output_type="pt", generator=torch.Generator().manual_seed(seed), **extra)
    if name == "latte":  # batched CFG; video_length must be the transformer's
        return pipe("a red shirt", video_length=2, height=8, width=8, clean_caption=False, **kw).frames
    length = 8 if name == "cogvideox" else 16  # CogVideoX: its transformer's max_text_seq_length
    return pipe("a red shirt", num_frames=5, height=32, width=32, max_sequence_length=length, **kw).frames


@pytest.mark.parametrize("name", ["latte", "hunyuanvideo", "cogvideox"])
def test_video_pipelines(pipes, name):
    """LattePipeline, HunyuanVideoPipeline and CogVideoXPipeline, assembled offline: computing everything is
    bit-identical, each method runs, and two calls in one block equal two fresh runs. CogVideoX has no token
    path (its MLP runs on [text; image] at once): ToCa and ClusCa refuse it, naming why."""
    pipe = pipes(name)
    ref = _video_call(name, pipe)
    for method in (ditcache.NoCache(), ditcache.FORA(interval=1)):
        with ditcache.cached(pipe, method):
            assert torch.equal(_video_call(name, pipe), ref)
    toca = ditcache.ToCa.preset("opensora", interval=2, warmup=1) if name == "latte" else \
        ditcache.ToCa(interval=2, fresh_ratio=0.3, step_curve=(1.0, 0.0))
    clusca = ditcache.ClusCa(interval=2, warmup=1, clusters=2, frame_wise=True)
    token_methods = (toca, clusca)
    if name == "cogvideox":
        for method in token_methods:
            with pytest.raises(ValueError, match="token-subset path|image MLP branches"):
                with ditcache.cached(pipe, method):
                    _video_call(name, pipe)
        token_methods = ()
    for method in (ditcache.FORA(interval=2), ditcache.TaylorSeer(interval=2, order=1, warmup=1), *token_methods,
                   ditcache.FreqCa(interval=2)):
        with ditcache.cached(pipe, method) as run:
            a, b = _video_call(name, pipe, seed=0), _video_call(name, pipe, seed=1)
        with ditcache.cached(pipe, method):
            fresh = _video_call(name, pipe, seed=1)
        assert torch.equal(b, fresh) and torch.isfinite(a).all()
        assert [g.steps() for g in run.stats.generations()] == [STEPS, STEPS]
