"""The calling patterns real pipelines use (issue 23): branches that come and go (SD3's skip-layer guidance),
two transformers (Wan 2.2), calls outside the denoising loop, per-token timesteps, shared and deep-copied
schedulers, methods shared between pipelines, a loop stopped early, the memory budget in every generation,
and two threads on one cached model."""

from __future__ import annotations

import copy
import threading
import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from torch import nn

import ditcache
from ditcache import adapters, zoo
from ditcache.forecast import Taylor
from ditcache.methods import parse_method
from ditcache.pipelines import tiny_pipeline
from ditcache.plan import Action, Plan

SLG = dict(prompt="a red dress", num_inference_steps=20, height=16, width=16, output_type="latent",
           skip_guidance_layers=[0], skip_layer_guidance_start=0.2, skip_layer_guidance_stop=0.6, guidance_scale=3.0)


@pytest.fixture(scope="module")
def sd3():
    return tiny_pipeline("sd3")


def _sd3(pipe):
    return pipe(**SLG, generator=torch.Generator().manual_seed(0)).images


def test_skip_layer_guidance_branch_appears_mid_generation(sd3):
    """SD3 with SLG makes a second call (branch 1) only on steps inside [0.2, 0.6) of the run: steps 4..11
    of 20 (the pipeline's rule: step i is inside iff 20 * 0.2 < i < 20 * 0.6, written out here). Its first
    call computes everything; FORA(1) stays exact; FORA(3), ToCa and ClusCa run."""
    ref = _sd3(sd3)
    with ditcache.cached(sd3, ditcache.FORA(interval=1)) as run:
        assert torch.equal(_sd3(sd3), ref)
    assert sorted(r.step for r in run.stats.records if r.branch == 1) == list(range(5, 12))
    for method in (ditcache.FORA(interval=3), ditcache.ToCa(interval=3, score="random"),
                   ditcache.ClusCa(interval=3, clusters=4)):
        with ditcache.cached(sd3, method) as run:
            out = _sd3(sd3)
        assert torch.isfinite(out).all() and out.shape == ref.shape
        first = next(r for r in run.stats.records if r.branch == 1)
        assert first.step == 5 and set(first.actions) == {"full"}
        assert any(a != "full" for r in run.stats.records if r.branch == 1 for a in r.actions)


def _wan22():
    pipe = tiny_pipeline("wan")
    torch.manual_seed(1)
    second = copy.deepcopy(pipe.transformer)
    for p in second.parameters():
        p.data.add_(0.01 * torch.randn_like(p))
    pipe.register_modules(transformer_2=second)
    pipe.register_to_config(boundary_ratio=0.875)
    return pipe


def test_two_transformers_are_both_cached():
    """Wan 2.2: `transformer` runs the steps whose timestep is >= 0.875 * 1000, `transformer_2` the rest.
    Both are hooked, one step clock drives both, and transformer_2's first call (mid-trajectory) computes
    everything."""
    pipe = _wan22()
    kw = dict(prompt="a red dress", num_inference_steps=20, height=16, width=16, num_frames=5, output_type="latent")
    ref = pipe(**kw, generator=torch.Generator().manual_seed(0)).frames
    with ditcache.cached(pipe, ditcache.FORA(interval=1)) as run:
        assert torch.equal(pipe(**kw, generator=torch.Generator().manual_seed(0)).frames, ref)
    assert set(run.runs) == {"transformer", "transformer_2"}
    high = pipe.scheduler.timesteps >= 0.875 * 1000  # which steps the first transformer runs
    n_high = int(high.sum())
    assert run.runs["transformer"].stats.steps() == n_high
    assert run.runs["transformer_2"].stats.steps() == 20 - n_high
    with ditcache.cached(pipe, ditcache.FORA(interval=3)) as run:
        out = pipe(**kw, generator=torch.Generator().manual_seed(0)).frames
    low = run.runs["transformer_2"].stats.records
    assert low[0].step == n_high and set(low[0].actions) == {"full"}
    assert run.runs["transformer_2"].stats.counts()["reuse"] > 0 and torch.isfinite(out).all()
    summary = run.stats.summary()
    assert f"transformer: {n_high} steps" in summary and f"transformer_2: {20 - n_high} steps" in summary
    assert not any("forward" in m.__dict__ for t in (pipe.transformer, pipe.transformer_2) for m in t.modules())


def test_pipeline_with_an_unmappable_transformer_is_refused():
    pipe = tiny_pipeline("wan")
    pipe.register_modules(transformer_2=torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with pytest.raises(TypeError, match="cannot map Sequential"):
        ditcache.apply(pipe, ditcache.FORA())
    assert not any("forward" in m.__dict__ for m in pipe.transformer.modules())


def _bare(method, warmup_call: bool, after_call: bool):
    """A bare DiT in a user loop driven by a DDIM scheduler; optionally a warm-up call before set_timesteps
    and an extra call after the last step()."""
    model = zoo.build("dit-tiny")
    noise, cond, _ = zoo.conditioning("dit-tiny", 2)
    scheduler = DDIMScheduler()
    with ditcache.cached(model, method, scheduler=scheduler) as run:
        if warmup_call:
            model(noise, timestep=torch.full((2,), 500), **cond)
        scheduler.set_timesteps(8)
        x = noise
        for t in scheduler.timesteps:
            eps = model(x, timestep=t.expand(2), **cond).sample[:, :4]
            x = scheduler.step(eps, t, x).prev_sample
        if after_call:
            model(x, timestep=torch.full((2,), 1), **cond)
    return x, run


def test_calls_outside_the_loop_run_uncached_and_shift_nothing():
    ref, ref_run = _bare(ditcache.FORA(interval=3), False, False)
    out, run = _bare(ditcache.FORA(interval=3), True, True)
    assert torch.equal(out, ref)
    assert [r.actions for r in run.stats.records] == [r.actions for r in ref_run.stats.records]
    assert len(run.stats.records) == 8


def test_per_token_timesteps_read_as_the_step_noise_level():
    """expand_timesteps: the clean first frame's tokens carry 0, the rest the step's t."""
    t = torch.full((2, 12), 700.0)
    t[:, :4] = 0.0
    assert adapters.timestep_value(t) == 700.0
    assert adapters.timestep_value([torch.tensor(0.3), torch.tensor(0.3)]) == pytest.approx(0.3)


def test_runs_on_a_shared_scheduler_come_off_in_any_order():
    for order in ((0, 1), (1, 0)):
        scheduler = DDIMScheduler()
        runs = [ditcache.apply(zoo.build("dit-tiny"), ditcache.FORA(interval=2), scheduler=scheduler) for _ in "ab"]
        runs[order[0]].remove()
        assert "step" in scheduler.__dict__  # the other run still follows it
        runs[order[1]].remove()
        assert not {"step", "set_timesteps", "_ditcache_hook"} & set(scheduler.__dict__)
        scheduler.set_timesteps(4)  # the class's own methods again
        assert len(scheduler.timesteps) == 4


def test_a_deep_copied_scheduler_steps_itself_and_drives_the_clock():
    """LTX-2 steps its audio latents with copy.deepcopy(self.scheduler)."""
    scheduler = FlowMatchEulerDiscreteScheduler()
    model = zoo.build("dit-tiny")
    noise, cond, _ = zoo.conditioning("dit-tiny", 2)
    with ditcache.cached(model, ditcache.FORA(interval=2), scheduler=scheduler) as run:
        scheduler.set_timesteps(4)
        twin = copy.deepcopy(scheduler)
        t = scheduler.timesteps[0]
        model(noise, timestep=t.expand(2), **cond)
        assert run.clock.step_open
        twin.step(noise[:, :4], t, noise)
        assert not run.clock.step_open             # the copy closed the step
        assert twin.step_index == 1 and scheduler.step_index is None  # and stepped itself, not the original
    # after the run, the copy (a pipeline's temporary) notifies no one and still steps itself
    assert twin.__dict__["_ditcache_hook"].listeners == []
    twin.step(noise[:, :4], twin.timesteps[1], noise)
    assert twin.step_index == 2


class _Binds:
    """A method whose bind keeps per-model state, like a learned method's artifact."""

    name = "binds"

    def validate(self):
        pass

    def bind(self, model, sites):
        self.model = model

    def plan(self, ctx, sites, store):
        assert self.model is not None
        return [ditcache.plan.FULL] * len(sites)


def test_applying_a_method_does_not_mutate_it():
    method = _Binds()
    method.model = None
    a, b = zoo.build("dit-tiny"), zoo.build("dit-tiny", seed=1)
    run_a, run_b = ditcache.apply(a, method, steps=2), ditcache.apply(b, method, steps=2)
    assert method.model is None and run_a.method.model is a and run_b.method.model is b
    run_a.remove()
    run_b.remove()


def test_a_loop_stopped_early_does_not_leak_into_the_next():
    model = zoo.build("dit-tiny")
    noise, cond, _ = zoo.conditioning("dit-tiny", 2)
    ts = [999, 833, 666, 500, 333, 166]

    def loop(n):
        return [model(noise, timestep=torch.full((2,), t), **cond).sample for t in ts[:n]]

    with ditcache.cached(model, ditcache.TaylorSeer(interval=2, order=1), steps=6) as run:
        fresh = loop(6)
    with ditcache.cached(model, ditcache.TaylorSeer(interval=2, order=1), steps=6) as run:
        loop(4)           # stopped early: 4 of 6 steps
        again = loop(6)   # time turns back: a new generation
    assert all(torch.equal(x, y) for x, y in zip(again, fresh))
    assert [r.generation for r in run.stats.records] == [0] * 4 + [1] * 6


def test_memory_budget_is_checked_in_every_generation():
    model = zoo.build("dit-tiny")
    small = ditcache.estimate_memory(model, ditcache.FORA(interval=2), dict(
        hidden_states=torch.zeros(1, 4, 8, 8), timestep=torch.zeros(1), class_labels=torch.zeros(1, dtype=torch.long)),
        steps=4)["total"]
    with ditcache.cached(model, ditcache.FORA(interval=2), steps=4, max_cache_bytes=small * 2) as run:
        for batch in (1, 4):
            noise, cond, _ = zoo.conditioning("dit-tiny", batch)
            calls = lambda: [model(noise, timestep=torch.full((batch,), t), **cond) for t in (999, 666, 333, 1)]  # noqa: E731
            if batch == 1:
                calls()
            else:
                with pytest.raises(MemoryError, match="max_cache_bytes"):
                    calls()
    assert run.generation == 1


def test_a_second_thread_is_refused_and_the_first_generation_is_untouched():
    model = zoo.build("dit-tiny")
    noise, cond, _ = zoo.conditioning("dit-tiny", 2)
    ts = [999, 833, 666, 500]
    with ditcache.cached(model, ditcache.FORA(interval=2), steps=4):
        ref = [model(noise, timestep=torch.full((2,), t), **cond).sample for t in ts]
    errors = []
    with ditcache.cached(model, ditcache.FORA(interval=2), steps=4):
        first = [model(noise, timestep=torch.full((2,), ts[0]), **cond).sample]

        def other():
            try:
                model(noise, timestep=torch.full((2,), 999), **cond)
            except ditcache.engine.ConcurrentCall as e:
                errors.append(str(e))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        first += [model(noise, timestep=torch.full((2,), t), **cond).sample for t in ts[1:]]
    assert len(errors) == 1 and "one pipeline (and one ditcache.cached) per worker thread" in errors[0]
    assert all(torch.equal(x, y) for x, y in zip(first, ref))


class _RampBlock(nn.Module):
    """Its one site ("ramp") returns the per-token time feature t / 1000 whatever the latent: a site whose
    value is linear in the timestep, so a first-order forecast in timestep units is exact and reuse is not."""

    def __init__(self):
        super().__init__()
        self.ramp = nn.Identity()

    def forward(self, x, t):
        return self.ramp(t.expand_as(x))


class _RampModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([_RampBlock()])

    def forward(self, hidden_states, timestep):
        t = timestep.float().reshape(hidden_states.shape[0], -1, 1) / 1000  # (B, 1 or N, 1)
        for block in self.blocks:
            hidden_states = block(hidden_states, t)
        return hidden_states


@dataclass
class _FullAt:
    """FULL (keeping first differences) on the given steps, a first-order forecast in timestep units on the
    others."""

    full: tuple[int, ...]
    forecast: Taylor = field(default_factory=lambda: Taylor(units="timestep"))
    name: ClassVar[str] = "full-at"

    def validate(self):
        pass

    def plan(self, ctx, sites, store):
        if ctx.step in self.full:
            return [Plan(Action.FULL, order=1)] * len(sites)
        return [Plan(Action.FORECAST, order=1)] * len(sites)


def _ramp_loop(method, scheduler, steps, per_token=False):
    """A user loop over a bare _RampModel; returns the site value (model output) of every step."""
    adapters.register_block(_RampBlock, adapters.Branch("ramp", "mlp"))
    model = _RampModel()
    x = torch.zeros(1, 4, 2)
    outs = []
    with ditcache.cached(model, method, scheduler=scheduler):
        scheduler.set_timesteps(steps)
        for t in scheduler.timesteps:
            # per-token timesteps as Wan 2.2 TI2V's expand_timesteps: the first token (a clean frame) carries 0
            arg = torch.cat([torch.zeros(1, 1), t.reshape(1, 1).expand(1, 3)], 1) if per_token else t.reshape(1)
            out = model(x, timestep=arg)
            outs.append(out)
            x = scheduler.step(out, t, x).prev_sample * 0  # the ramp ignores the latent; keep it bounded
    return outs


@pytest.mark.parametrize("per_token", [False, True])
def test_a_repeated_timestep_keeps_the_forecast(per_token):
    """Heun's schedule repeats each inner timestep (999, 799.2, 799.2, 599.4, 599.4, ...). Full steps 1 and 2 both
    sit at 799.2: the second only moves the anchor, and step 3 (599.4) forecasts 0.7992 + (599.4 - 799.2) *
    (0.7992 - 0.999) / (799.2 - 999) = 0.5994 exactly, where dropping the slope would reuse 0.7992. Per-token
    timesteps (first token 0) measure time from the scheduler, so that token forecasts 0 and the others 0.5994."""
    sched = HeunDiscreteScheduler()
    outs = _ramp_loop(_FullAt(full=(0, 1, 2, 5)), sched, 6, per_token)
    ts = sched.timesteps
    assert float(ts[1]) == float(ts[2]) == pytest.approx(799.2) and float(ts[3]) == pytest.approx(599.4)
    expected = torch.full((1, 4, 2), 0.5994)
    if per_token:
        expected[:, 0] = 0.0
    assert torch.allclose(outs[3], expected, atol=1e-6)
    assert torch.allclose(outs[4], expected, atol=1e-6)  # step 4 is at 599.4 too


def test_forecasts_measure_time_in_step_indices_by_default():
    """TaylorSeer's default Taylor(): differences in step indices, as the references. On FLUX's shifted
    schedule (shift 3, 8 steps: not uniform in t) with full steps 0, 1, 4, 7 (warmup 2, interval 3), step 2
    forecasts F(1) + (2 - 1) * (F(1) - F(0)) / (1 - 0) = 2 t1 - t0 (in units of 1/1000): neither the reuse
    value t1 nor the true t2."""
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    outs = _ramp_loop(ditcache.TaylorSeer(interval=3, order=1, warmup=2), sched, 8)
    t = [float(v) / 1000 for v in sched.timesteps]
    want = 2 * t[1] - t[0]
    assert abs(want - t[1]) > 1e-3 and abs(want - t[2]) > 1e-3  # the step axis differs from reuse and from time
    assert torch.allclose(outs[2], torch.full((1, 4, 2), want), atol=1e-6)
    # step 3: F(1) + 2 (F(1) - F(0)) = 3 t1 - 2 t0
    assert torch.allclose(outs[3], torch.full((1, 4, 2), 3 * t[1] - 2 * t[0]), atol=1e-6)
    # in timestep units the same schedule forecasts the true, linear-in-t value
    outs = _ramp_loop(ditcache.TaylorSeer(interval=3, order=1, warmup=2, forecast=Taylor(units="timestep")),
                      FlowMatchEulerDiscreteScheduler(shift=3.0), 8)
    assert torch.allclose(outs[2], torch.full((1, 4, 2), t[2]), atol=1e-6)


@pytest.mark.parametrize("make", [
    HeunDiscreteScheduler,
    lambda: UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
    lambda: DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
], ids=["heun", "unipc", "dpm"])
def test_taylorseer_forecasts_by_hand_under_heun_unipc_and_dpm(make):
    """TaylorSeer(interval=3, order=2, warmup=2) on the ramp site F(k) = t_k / 1000 (t_k: the scheduler's k-th
    model-call timestep; Heun calls the model 2 * 6 - 1 = 11 times, each call a step). Full steps 0, 1, 4, 7, 10
    (warm-up, then every 3rd after step 1) return F(k). Backward differences in step indices, taken at each full
    step from step 1 (the last warm-up step) on: D1 = (F1 - F0) / 1 at step 1; at step 4 D1' = (F4 - F1) / 3 and
    D2 = (D1' - D1) / 3; at step 7 D1'' = (F7 - F4) / 3 and D2' = (D1'' - D1') / 3. Forecasts:
    steps 2, 3: F1 + D1 (k - 1); steps 5, 6: F4 + D1' (k - 4) + D2 (k - 4)^2 / 2; steps 8, 9: the same from step 7.
    The schedules are uneven (Heun repeats timesteps, UniPC and DPM here use flow shift 3), so these values differ
    from the true F(k) and from plain reuse."""
    sched = make()
    outs = _ramp_loop(ditcache.TaylorSeer(interval=3, order=2, warmup=2), sched, 6)
    f = [float(t) / 1000 for t in sched.timesteps]
    n = len(f)
    assert n == (11 if isinstance(sched, HeunDiscreteScheduler) else 6) == len(outs)
    want = {k: f[k] for k in (0, 1, 4, 7, 10) if k < n}
    d1 = f[1] - f[0]
    want.update({k: f[1] + d1 * (k - 1) for k in (2, 3)})
    for j, i in ((4, 1), (7, 4)):  # full step j, the full step before it i
        if j >= n:
            break
        d1_new = (f[j] - f[i]) / (j - i)
        d2 = (d1_new - d1) / (j - i)
        want.update({k: f[j] + d1_new * (k - j) + d2 * (k - j) ** 2 / 2 for k in (j + 1, j + 2) if k < n})
        d1 = d1_new
    assert sorted(want) == list(range(n))
    for k in range(n):
        assert torch.allclose(outs[k], torch.full((1, 4, 2), want[k]), rtol=0, atol=1e-6), (k, want[k])
    # the forecasts are neither the truth nor a reuse of the last full step, and the second-order term counts
    assert abs(want[2] - f[2]) > 1e-3 and abs(want[5] - f[5]) > 1e-4
    assert abs(want[5] - (f[4] + (f[4] - f[1]) / 3)) > 1e-3


def test_a_call_between_set_timesteps_and_the_loop_shifts_no_branch():
    """A call after set_timesteps but before the loop (a reference encode at t = 0) is recognised when the loop's
    first call comes at another timestep: same actions and outputs as without it."""
    def loop(pre_call):
        model = zoo.build("dit-tiny")
        noise, cond, _ = zoo.conditioning("dit-tiny", 2)
        scheduler = DDIMScheduler()
        with ditcache.cached(model, ditcache.FORA(interval=3), scheduler=scheduler) as run:
            scheduler.set_timesteps(8)
            if pre_call:
                model(noise * 0, timestep=torch.zeros(2), **cond)
            x = noise
            for t in scheduler.timesteps:
                for _ in range(2):  # two branches a step (split CFG)
                    eps = model(x, timestep=t.expand(2), **cond).sample[:, :4]
                x = scheduler.step(eps, t, x).prev_sample
        return x, [(r.step, r.branch, r.actions) for r in run.stats.records]

    ref, ref_records = loop(False)
    out, records = loop(True)
    assert torch.equal(out, ref)
    assert records[1:] == ref_records and records[0][:2] == (0, 0) and set(records[0][2]) == {"full"}


def test_a_schedule_that_caches_close_to_nothing_at_few_steps_says_so_and_names_a_setting():
    """TaylorSeer(warmup=3, interval=5) on 4 steps: full steps 0, 1, 2 (the warm-up), so 1 of 4 cached. At 50 steps
    it computes 0, 1, 2, 7, 12, ..., 47 (12 steps) and caches 38 = 76%. Of the smaller settings, 3 of 4 cached
    (75%) comes closest; warmup=1 keeps interval 5 (full steps: 0 only) and is the least change."""
    model = zoo.build("dit-tiny")
    noise, cond, _ = zoo.conditioning("dit-tiny", 1)
    ts = [999, 750, 500, 250]
    with pytest.warns(UserWarning) as record:
        with ditcache.cached(model, ditcache.TaylorSeer(interval=5, warmup=3), steps=4):
            for t in ts:
                model(noise, timestep=torch.full((1,), t), **cond)
    text = " ".join(str(w.message) for w in record)
    assert "only 1 of 4 steps will be cached" in text
    assert "taylorseer:interval=5,warmup=1 would cache 3 of 4" in text and "76%" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: FORA(1) means to compute everything; TaylorSeer caches 5 of 8
        for method, steps in ((ditcache.FORA(interval=1), 4), (ditcache.TaylorSeer(), 8)):
            with ditcache.cached(model, method, steps=steps):
                for t in range(steps):
                    model(noise, timestep=torch.full((1,), 999 - 100 * t), **cond)


def test_a_warmup_given_as_a_share_of_the_run_scales_with_the_step_count():
    """warmup=0.06: round(0.06 * 50) = 3 leading full steps at 50 steps (the references' first_enhance), round(0.48)
    = 0, raised to 1, at 8. TaylorSeer's counter with interval 3 then gives 0, 1, 2, 5, 8, ... and 0, 3, 6."""
    method = parse_method("taylorseer:warmup=0.06,interval=3,order=1")
    assert method.warmup == 0.06 and parse_method("taylorseer:warmup=3").warmup == 3
    assert method.full_steps(50)[:6] == [0, 1, 2, 5, 8, 11] and method.full_steps(8) == [0, 3, 6]
    model = zoo.build("dit-tiny")
    noise, cond, _ = zoo.conditioning("dit-tiny", 1)
    with ditcache.cached(model, method, steps=8) as run:
        for t in range(8):
            model(noise, timestep=torch.full((1,), 999 - 120 * t), **cond)
    assert [r.step for r in run.stats.records if set(r.actions) == {"full"}] == [0, 3, 6]
    for bad in (0.0, 1.0, 1.5, True, 0):
        with pytest.raises(ValueError, match="share of the run"):
            ditcache.TaylorSeer(warmup=bad)
