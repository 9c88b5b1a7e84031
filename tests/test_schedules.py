"""Full-step lists on 50 steps, written out from the references' rules (not from ditcache's code):

- FORA: s == T-1 or s % N == 0, with s = 49 - step counting down;
- TaylorSeer, ClusCa, FreqCa, HyCa: first_enhance W steps, then a counter reset at each full step fires
  when it reaches N - 1 (full at W-1+N, W-1+2N, ...);
- ToCa: ditcache's counter, a named deviation (next full = this full + round(N / (a + b p)), 2 in the
  sensitive window, and the last step), with PixArt's curve and Flux's fixed interval after three full
  steps; the reference DiT code's modulo rule (``schedule="modulo"``) is checked against a transcription of
  that code in tests/test_method_cores.py;
- TokenCache: every k1 steps before the boundary, every k2 after; L2C: every other step.
Each method's defaults and two other settings; the engine's records of a real run must agree.
"""

from __future__ import annotations

import pytest
import torch

import ditcache
from ditcache import zoo
from ditcache.sampling import sample

FORA3 = [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 37, 40, 43, 46, 49]
FORA2 = [0, 1] + list(range(3, 50, 2))
FORA5 = [0, 4, 9, 14, 19, 24, 29, 34, 39, 44, 49]
TS_4_2 = [0, 1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49]      # TaylorSeer's DiT defaults
TS_6_3 = [0, 1, 2, 8, 14, 20, 26, 32, 38, 44]                        # its FLUX setting: 10 full = 5.00x
TS_5_1 = [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]                      # HunyuanVideo's
CL_5_3 = [0, 1, 2, 7, 12, 17, 22, 27, 32, 37, 42, 47]                # ClusCa's FLUX defaults
TS_8_2_TAIL6 = [0, 1, 9, 17, 25, 33, 41]       # N 8, W 2 fires at 9, 17, ..., 49; a 6-step tail drops 49
TS_45_7 = [0, 1, 7, 14, 20, 27, 33, 40, 46]    # N 45/7, W 2: 1 + floor(j 45/7 + 1/2) = 1 + 6, 13, 19, ..., 45
TS_7_5 = [0, 1, 9, 16, 24, 31, 39, 46]          # N 7.5, W 2: halves round up: 1 + 8, 15, 23, 30, 38, 45
TS_4_2_TAIL5 = [0, 1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41]  # tail 0.1 of 50 = 5 steps (45..49): drops 45, 49
TPRR_4_2 = [0, 4, 8, 12, 16, 20, 24] + list(range(26, 50, 2))
TPRR_6_2 = [0, 6, 12, 18, 24] + list(range(26, 50, 2))
TPRR_3_2_03 = [0, 3, 6, 9, 12, 15] + list(range(17, 50, 2))
TOCA_DIT = [0, 5, 9, 13, 17, 20, 23, 26, 29, 32, 34, 36, 38, 40, 42, 44, 46, 48, 49]
TOCA_DIT_N4 = [0, 7, 13, 18, 22, 26, 30, 32, 34, 36, 38, 40, 43, 46, 49]
TOCA_PIXART = [0, 4, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35, 38, 41, 44, 47, 49]
TOCA_FLUX = [0, 1, 2, 6, 10, 14, 18, 22, 26, 30, 34, 38, 42, 46, 49]

STATIC = [
    (ditcache.FORA(), FORA3), (ditcache.FORA(interval=2), FORA2), (ditcache.FORA(interval=5), FORA5),
    (ditcache.TaylorSeer(), TS_4_2), (ditcache.TaylorSeer(interval=6, order=1, warmup=3), TS_6_3),
    (ditcache.TaylorSeer(interval=5, order=1, warmup=1), TS_5_1),
    (ditcache.TaylorSeer(interval=8, tail=6), TS_8_2_TAIL6), (ditcache.TaylorSeer(tail=0.1), TS_4_2_TAIL5),
    (ditcache.TaylorSeer(interval=8, tail=1), TS_8_2_TAIL6), (ditcache.TaylorSeer(tail=4), TS_4_2[:-1]),
    (ditcache.TaylorSeer(interval=45 / 7), TS_45_7), (ditcache.TaylorSeer(interval=7.5), TS_7_5),
    (ditcache.TaylorSeer(interval=4.0), TS_4_2), (ditcache.TaylorSeer(interval=7.5, tail=4), TS_7_5[:-1]),
    (ditcache.ClusCa(), CL_5_3), (ditcache.ClusCa.preset("dit"), TS_4_2),
    (ditcache.ClusCa.preset("hunyuanvideo"), TS_5_1),
    (ditcache.FreqCa(), TS_6_3), (ditcache.FreqCa(interval=4, warmup=2), TS_4_2),
    (ditcache.FreqCa(interval=5, warmup=1), TS_5_1),
    (ditcache.TokenCache(), TPRR_4_2), (ditcache.TokenCache(k1=6), TPRR_6_2),
    (ditcache.TokenCache(k1=3, boundary=0.3), TPRR_3_2_03),
    (ditcache.L2C(), list(range(0, 50, 2))), (ditcache.L2C(interval=3), list(range(0, 50, 3))),
]


@pytest.mark.parametrize("method,full", STATIC, ids=lambda v: ditcache.methods.describe(v) if hasattr(v, "name")
                         else "")
def test_full_steps_on_50_steps(method, full):
    assert method.full_steps(50) == full


def _run_full_steps(method, name="dit-tiny", steps=50):
    model = zoo.build(name)
    noise, cond, uncond = zoo.conditioning(name, 1)
    with ditcache.cached(model, method) as run:
        sample(model, noise, cond, uncond, steps=steps, guidance_scale=2.0)
    return [r.step for r in run.stats.records if all(a == "full" for a in r.actions)]


@pytest.mark.parametrize("method,full", [
    (ditcache.FORA(), FORA3), (ditcache.TaylorSeer(), TS_4_2), (ditcache.ClusCa(clusters=4), CL_5_3),
    (ditcache.FreqCa(), TS_6_3), (ditcache.TaylorSeer(interval=8, tail=6), TS_8_2_TAIL6),
    (ditcache.TaylorSeer(interval=45 / 7), TS_45_7),
])
def test_runs_follow_their_schedule(method, full):
    assert _run_full_steps(method) == full


@pytest.mark.parametrize("method,full,name", [
    (ditcache.ToCa.preset("dit"), TOCA_DIT, "dit-tiny"),
    (ditcache.ToCa.preset("dit", interval=4), TOCA_DIT_N4, "dit-tiny"),
    (ditcache.ToCa.preset("pixart"), TOCA_PIXART, "pixart-tiny"),
    (ditcache.ToCa.preset("flux"), TOCA_FLUX, "flux-tiny"),
])
def test_toca_schedules(method, full, name):
    assert _run_full_steps(method, name) == full


def test_a_tail_never_turns_the_warm_up_into_forecasts():
    """A tail as long as the run leaves the warm-up's full steps and removes every later one."""
    assert ditcache.TaylorSeer(warmup=3, tail=50).full_steps(50) == [0, 1, 2]
    assert ditcache.TaylorSeer(warmup=3, tail=0.99).full_steps(8) == [0, 1, 2]


@pytest.mark.parametrize("bad", [0, 0.5, 0.99, True, "4", None])
def test_a_bad_interval_is_refused(bad):
    with pytest.raises(ValueError, match="interval must be an int >= 1, or a float >= 1"):
        ditcache.TaylorSeer(interval=bad)
    if bad is not None:  # HyCa's None: the calibration's interval
        with pytest.raises(ValueError, match="interval must be an int >= 1, or a float >= 1"):
            ditcache.HyCa(interval=bad)


@pytest.mark.parametrize("bad", [-1, 1.0, -0.1, True, "6", None])
def test_a_bad_tail_is_refused(bad):
    with pytest.raises(ValueError, match="tail must be"):
        ditcache.TaylorSeer(tail=bad)
    with pytest.raises(ValueError, match="tail must be"):
        ditcache.HyCa(tail=bad)


def test_hyca_follows_its_calibration_schedule_with_a_tail():
    """The shipped `dit256` calibration: interval 5, warm-up 3, so full at 0, 1, 2, then 2 + 5k: 7, 12, ..., 47;
    interval 7 gives 9, 16, ..., 44; a tail of 6 (steps 44..49) drops 44 and 47."""
    from ditcache.adapters import find_sites
    from ditcache.models import load_default

    model = load_default("dit256").transformer
    runs = {}
    for kw in ({}, {"interval": 7}, {"tail": 6}, {"interval": 7, "tail": 6}, {"interval": 45 / 7, "warmup": 2}):
        method = ditcache.HyCa(artifact="dit256", **kw)
        method.bind(model, find_sites(model))
        runs[tuple(kw.items())] = method.full_steps(50)
    assert runs[()] == [0, 1, 2, 7, 12, 17, 22, 27, 32, 37, 42, 47]
    assert runs[(("interval", 7),)] == [0, 1, 2, 9, 16, 23, 30, 37, 44]
    assert runs[(("tail", 6),)] == [0, 1, 2, 7, 12, 17, 22, 27, 32, 37, 42]
    assert runs[(("interval", 7), ("tail", 6))] == [0, 1, 2, 9, 16, 23, 30, 37]
    assert runs[(("interval", 45 / 7), ("warmup", 2))] == TS_45_7


def test_hyca_states_its_schedule_before_a_run():
    """full_steps answers on an instance that no run has bound yet (the calibration's interval 5 and warm-up 3
    read from the artifact, as in the test above), and so does a copy made by dataclasses.replace, which the
    short-schedule warning builds to suggest a setting (it raised AttributeError before)."""
    import dataclasses

    from ditcache.engine.checks import suggest

    assert ditcache.HyCa(artifact="dit256").full_steps(50) == [0, 1, 2, 7, 12, 17, 22, 27, 32, 37, 42, 47]
    assert ditcache.HyCa(artifact="dit256", interval=7).full_steps(50) == [0, 1, 2, 9, 16, 23, 30, 37, 44]
    late = ditcache.HyCa(artifact="dit256", interval=3, warmup=40)  # full 0..39, then 42, 45, 48: 7 of 50 cached
    assert dataclasses.replace(late, warmup=3).full_steps(50)[:5] == [0, 1, 2, 5, 8]
    assert suggest(late, 8).full_steps(8) != late.full_steps(8)


def test_taylorseer_forecasts_the_last_steps_only_between_full_ones():
    """The old schedule forecast the last three of 50 steps at N=4; the reference computes step 49."""
    assert TS_4_2[-1] == 49 and torch.tensor(TS_4_2).diff()[2:].eq(4).all()


def test_the_shipped_ddim_last_step_ignores_the_model():
    """DDIM ending on timestep 0 with set_alpha_to_one=False steps from alpha_bar_0 to alpha_bar_0: x_prev =
    sqrt(a) (x - sqrt(1 - a) eps) / sqrt(a) + sqrt(1 - a) eps = x, whatever eps is (the basis of ``tail``)."""
    from ditcache.sampling import SCHEDULERS

    scheduler = SCHEDULERS["ddim"]()
    scheduler.set_timesteps(50)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    last = scheduler.timesteps[-1]
    assert int(last) == 0
    for eps in (torch.zeros_like(x), torch.ones_like(x), -3 * x):
        assert torch.allclose(scheduler.step(eps, last, x).prev_sample, x, atol=1e-6)


def test_a_tail_over_the_last_ddim_step_leaves_the_images_as_they_were():
    """TaylorSeer at interval 6 computes step 49 (1 + 6 * 8); a tail of 1 forecasts it instead, and since that
    DDIM step ignores the model, the samples agree to rounding while one full step fewer is run."""
    model = zoo.build("dit-tiny")
    noise, cond, uncond = zoo.conditioning("dit-tiny", 2)
    out, fulls = [], []
    for method in (ditcache.TaylorSeer(interval=6), ditcache.TaylorSeer(interval=6, tail=1)):
        with ditcache.cached(model, method) as run:
            out.append(sample(model, noise, cond, uncond, steps=50, guidance_scale=2.0))
        fulls.append([r.step for r in run.stats.records if all(a == "full" for a in r.actions)])
    assert fulls[0][-1] == 49 and fulls[1] == fulls[0][:-1]
    # within 4 float32 ulps of the largest value (forecasting step 43 as well moves them by 3x that)
    ulps = 4 * torch.finfo(torch.float32).eps * out[0].abs().max()
    assert (out[0] - out[1]).abs().max() <= ulps
