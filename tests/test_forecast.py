"""Forecasters against values worked out by hand (scalar features, so the arithmetic is checkable)."""

from __future__ import annotations

import pytest
import torch

from ditcache.forecast import FoCa, HiCache, Taylor, common
from ditcache.forecast.common import Coords
from ditcache.forecast.hyca import ChannelMix
from ditcache.store import Store


def _fit(forecaster, points, order, units="step"):
    """Full steps at (x, f(x)); x is both the step index and the timestep value."""
    store = Store(forecaster)
    for x, fx in points:
        store.update((0, 0), torch.tensor([[[float(fx)]]]), Coords(float(x), int(x)), order)
    return store


def _at(store, x, order) -> float:
    return float(store.predict((0, 0), Coords(float(x), int(x)), order)[0])


# f(x) = x^2, x^3, x^4 on 0, 1, 2, ...: TaylorSeer's backward differences (gap d for every order) and the
# Taylor sum F0 + F1 + F2/2 + F3/6 + F4/24 at one step ahead, against Newton's interpolating polynomial.
#   x^2 at 0,1,2 -> F = 4, 3, 2:                 Taylor(3) = 4 + 3 + 2/2 = 8;              Newton 9
#   x^3 at 0..3  -> F = 27, 19, 12, 6:           Taylor(4) = 27 + 19 + 6 + 1 = 53;         Newton 64
#   x^4 at 0..4  -> F = 256, 175, 110, 60, 24:   Taylor(5) = 256 + 175 + 55 + 10 + 1 = 497; Newton 625
@pytest.mark.parametrize("power,order,backward,newton", [
    (1, 1, 2, 2), (2, 1, 7, 7), (2, 2, 8, 9), (3, 3, 53, 64), (4, 4, 497, 625),
])
def test_taylor_on_a_uniform_grid(power, order, backward, newton):
    points = [(x, x**power) for x in range(power + 1)]
    nxt = power + 1
    assert _at(_fit(Taylor("backward"), points, order), nxt, order) == backward
    assert _at(_fit(Taylor("newton"), points, order), nxt, order) == newton


def test_taylor_on_an_uneven_grid():
    """x^2 at 0, 1, 3, forecast at 4. Backward: F1 = (9-1)/2 = 4, F2 = (4-1)/2 = 1.5, so 9 + 4 + 1.5/2 = 13.75.
    Newton: f[3,1] = 4, f[3,1,0] = (4-1)/3 = 1, so 9 + 4*1 + 1*(1*3) = 16 (exact)."""
    points = [(0, 0), (1, 1), (3, 9)]
    assert _at(_fit(Taylor("backward"), points, 2), 4, 2) == 13.75
    assert _at(_fit(Taylor("newton"), points, 2), 4, 2) == 16.0
    assert _at(_fit(Taylor("backward"), points, 1), 4, 1) == 13.0   # 9 + 4
    assert _at(_fit(Taylor("backward"), points, 2), 4, 0) == 9.0    # order 0: the last output


def test_taylor_uses_timestep_values_not_step_indices():
    """A line sampled at timesteps 900 and 800 (steps 0 and 1), forecast at timestep 650 (step 2):
    in timestep units the slope is per unit of t, so 650 is exact; in step units it extrapolates one step."""
    f = lambda t: 5.0 + 0.01 * t  # noqa: E731
    for units, want in (("timestep", f(650.0)), ("step", f(800.0) + (f(800.0) - f(900.0)))):
        store = Store(Taylor(units=units))
        store.update((0, 0), torch.tensor([f(900.0)]), Coords(900.0, 0), 1)
        store.update((0, 0), torch.tensor([f(800.0)]), Coords(800.0, 1), 1)
        assert float(store.predict((0, 0), Coords(650.0, 2), 1)[0]) == pytest.approx(want, abs=1e-5)


def test_order_zero_update_drops_the_differences():
    """A full step with order 0 (TaylorSeer's warm-up steps) keeps only the output."""
    store = _fit(Taylor(), [(0, 0), (1, 1), (2, 4)], 2)
    store.update((0, 0), torch.tensor([[[9.0]]]), Coords(3.0, 3), 0)
    assert _at(store, 4, 2) == 9.0


def test_hicache_is_a_damped_taylor_series():
    """Scaled Hermite basis, sigma = 0.5: F0 + 0.5 D F1 + (D^2 - 2)/8 F2. On x^2 at steps 0, 1, 2
    (F = 4, 3, 2) one step ahead: 4 + 1.5 - 0.25 = 5.25; at sigma = 1/sqrt(2): Taylor minus F2/2 = 7."""
    points = [(0, 0), (1, 1), (2, 4)]
    assert _at(_fit(HiCache(sigma=0.5), points, 2), 3, 2) == pytest.approx(5.25)
    assert _at(_fit(HiCache(sigma=2 ** -0.5), points, 2), 3, 2) == pytest.approx(7.0)
    assert _at(_fit(HiCache(sigma=0.5), points, 1), 3, 1) == pytest.approx(5.5)  # 4 + 0.5 * 3


def _foca_step(store, x, order=1) -> float:
    out = store.predict((0, 0), Coords(float(x), x), order)
    store.commit((0, 0), out, Coords(float(x), x))
    return float(out[0])


def test_foca_extrapolates_then_damps_beyond_its_horizon():
    """cache-dit's form with per-step slopes. Full steps at 0 and 1 (values 0, 1): D_f = 1 and D_c = 1, so
    P = 1 + (e/2)(1 + 1) = 1 + e up to e = 3; at e = 4 the damped form 1 + 1.5 (3/4)(D_f + D_c) = 3.25, with D_c
    from the committed forecasts (4 - 3 = 1). (The default BDF2/Heun form: tests/test_method_cores.py.)"""
    store = _fit(FoCa(slope="per_step"), [(0, 0), (1, 1)], 1)
    assert [_foca_step(store, x) for x in (2, 3, 4, 5)] == [2.0, 3.0, 4.0, 3.25]


def test_foca_anchor_slope_per_step_or_as_cache_dit():
    """Full at 0 (value 0), a reuse forecast at 1 (0: only one full step so far), full at 2 (value 2).
    At step 3 (e = 1): D_c = 2 - 0 = 2. per_step: D_f = (2 - 0) / 2 = 1, P = 2 + 0.5 * 3 = 3.5;
    cache-dit: D_f = 2, P = 2 + 0.5 * 4 = 4."""
    for slope, want in (("per_step", 3.5), ("cachedit", 4.0)):
        store = _fit(FoCa(slope=slope), [(0, 0)], 1)
        assert _foca_step(store, 1) == 0.0
        store.update((0, 0), torch.tensor([[[2.0]]]), Coords(2.0, 2), 1)
        assert _foca_step(store, 3) == want


def test_half_precision_keeps_differences_in_float32():
    """Fourth differences of fp16 features over DiT's integer timestep gaps (20) underflow fp16
    (x / 20**4 for x ~ 1e-3 is ~6e-9, below fp16's smallest subnormal 6e-8): they are kept in float32."""
    store = Store(Taylor())
    for i, t in enumerate((999.0, 979.0, 959.0, 939.0, 919.0)):
        store.update((0, 0), torch.tensor([[[1.0 + 1e-3 * i * i * i * i]]], dtype=torch.float16), Coords(t, i), 4)
    history = store.entries[(0, 0)].history
    assert [f[0].dtype for f in history["factors"]] == [torch.float32] * 4
    assert float(history["factors"][3][0]) != 0.0
    out = store.predict((0, 0), Coords(899.0, 5), 4)[0]
    assert out.dtype == torch.float16


@pytest.mark.parametrize("forecaster", [Taylor("backward"), Taylor("newton"), HiCache()], ids=lambda f: f.name)
def test_forecasts_leave_the_cache_as_it_was(forecaster):
    """Later forecast terms are added in place into the forecast's own tensor: never into the cached anchor or
    differences. x^2 at 0, 1, 2 (anchor 4): forecasting twice gives the same value and the anchor stays 4."""
    store = _fit(forecaster, [(0, 0), (1, 1), (2, 4)], 2)
    first, second = _at(store, 3, 2), _at(store, 3, 2)
    assert first == second and first != 4.0
    assert float(store.predict((0, 0), Coords(3.0, 3), 0)[0]) == 4.0  # order 0: the anchor itself


def test_hyca_forecasts_leave_the_cache_as_it_was():
    """HyCa's two terms (the second by addcmul in place). taylor2 on x^2 at 0, 4, 8: d1 = (64 - 16) / 4 = 12,
    d2 = (12 - 4) / 4 = 2; two steps ahead (2, 2^2 / 2) gives 64 + 2 * 12 + 2 * 2 = 92, again on a second
    call, and the anchor stays 64."""
    mix = ChannelMix({0: torch.tensor([2])})  # POOL[2] = taylor2
    history = mix.new_history((0, 0))
    prev = None
    for s in (0, 4, 8):
        out = (torch.full((1, 1, 1), float(s * s)),)
        mix.update(history, prev, out, (Coords(float(s), s), None), 2)
        prev = out
    got = [float(mix.predict(history, prev, Coords(10.0, 10), 2)[0]) for _ in range(2)]
    assert got == [92.0, 92.0] and float(prev[0]) == 64.0
    # its terms: a (D,) weight per channel for each order, 2 and 2^2 / 2 = 2 here
    assert [w.tolist() for w, _ in mix.terms(history, Coords(10.0, 10), 2)] == [[2.0], [2.0]]


@pytest.mark.parametrize("forecaster", [Taylor(), Taylor(differences="newton"), HiCache()], ids=["taylor", "newton",
                                                                                                 "hicache"])
def test_terms_give_the_forecast_as_anchor_plus_a_rise(forecaster):
    """A forecaster with ``terms``: its forecast is the anchor plus sum w F, for any anchor (the engine
    builds it on an edited anchor); on a parabola sampled at steps 0, 1, 2 the order-2 rise at step 4
    is the same for anchor a and a + 3."""
    h: dict = {}
    xs = [torch.full((1, 2, 1), float(s * s)) for s in range(3)]
    prev = None
    for s, x in enumerate(xs):
        forecaster.update(h, prev, (x,), (Coords(float(s), s), None if s == 0 else Coords(float(s - 1), s - 1)), 2)
        prev = (x,)
    at = Coords(4.0, 4)
    terms = forecaster.terms(h, at, 2)
    assert len(terms) == 2
    a = xs[-1]
    torch.testing.assert_close(common.apply_terms((a,), terms)[0], forecaster.predict(h, (a,), at, 2)[0])
    rise = forecaster.predict(h, (a,), at, 2)[0] - a
    torch.testing.assert_close(forecaster.predict(h, (a + 3.0,), at, 2)[0] - (a + 3.0), rise)
    assert forecaster.terms(h, at, 0) == []
