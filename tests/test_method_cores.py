"""Each method's core against values worked out by hand (in the comments), never read back from the code:
SpeCa's accept/reject, where its checking starts, tau over progress and the draft cap; FreqCa's band split and
its high-band forecast; HyCa's solver coefficients and its calibration's choice; FoCa's BDF2/Heun formula;
ToCa's schedule against the reference's modulo rule (and its counter, the named deviation)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import ditcache
from ditcache.forecast import FoCa
from ditcache.forecast.common import Coords
from ditcache.forecast.hyca import POOL, ChannelMix
from ditcache.learn.hyca import SiteCalibration
from ditcache.methods.freqca import low_band
from ditcache.plan import Action, Site, StepContext, counter_full, kept_order
from ditcache.store import Store


@pytest.fixture
def register():
    """register_block for a test's own block classes (conftest undoes it after the test)."""
    return ditcache.register_block


# ----------------------------------------------------------------------------------------------- SpeCa


class _SquareBlock(nn.Module):
    """Two branch sites whose outputs depend on the step s only: attn returns s^2 everywhere, mlp 0. So the
    block's real output is x + s^2 and a first-order Taylor draft's error is arithmetic."""

    def __init__(self):
        super().__init__()
        self.attn = nn.Identity()
        self.mlp = nn.Identity()

    def forward(self, x, s):
        x = x + self.attn(s**2 * torch.ones_like(x))
        return x + self.mlp(torch.zeros_like(x))


class _SquareModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([_SquareBlock()])

    def forward(self, hidden_states, timestep):
        s = (1000.0 - timestep.float().reshape(-1, 1, 1)) / 10  # called at timestep 1000 - 10 s
        for block in self.blocks:
            hidden_states = block(hidden_states, s)
        return hidden_states


def _speca_run(register, method, steps=10):
    """(full steps, the error each step's decision read, the model's output per step, the checked steps)."""
    register(_SquareBlock, ditcache.Branch("attn", "attn"), ditcache.Branch("mlp", "mlp"))
    model = _SquareModel()
    checked = []
    plan = method.plan

    def spy(ctx, sites, store):
        plans = plan(ctx, sites, store)
        if any(p.verify for p in plans):
            checked.append(ctx.step)
        return plans

    method.plan = spy
    x = torch.ones(1, 2, 3)
    run = ditcache.apply(model, method, steps=steps)
    try:
        outs = [float(model(x, timestep=torch.tensor([1000.0 - 10 * s]))[0, 0, 0]) for s in range(steps)]
        errors = list(run.store.shared["speca"]["errors"])
        full = [r.step for r in run.stats.records if all(a == "full" for a in r.actions)]
    finally:
        run.remove()
    return full, errors, outs, checked


def test_speca_accepts_and_rejects_drafts_by_the_block_error(register):
    """warmup 2, order 1, min_drafts 1, max_drafts 4, tau 0.5 flat. Real block output x + s^2, so the error of
    a draft is |forecast - s^2| / s^2 (relative to what the block adds to x).
    Steps 0, 1 full (differences from step 1: F(1) = 1, F1 = 1 - 0 = 1). Step 2: draft 1, unchecked.
    Step 3: draft 2, checked: forecast 1 + 2 * 1 = 3 against 9: error 6/9 = 0.667 > 0.5, so step 4 is full
    (F(4) = 16, F1 = (16 - 1) / 3 = 5). Step 5: draft 1, unchecked. Step 6 checked: 16 + 2 * 5 = 26 vs 36,
    10/36 = 0.278: accept; step 7: 16 + 15 = 31 vs 49, 18/49 = 0.367: accept; step 8: 36 vs 64, 28/64 =
    0.4375: accept; step 9: four drafts since step 4, the cap: full."""
    method = ditcache.SpeCa(order=1, warmup=2, min_drafts=1, max_drafts=4, threshold=0.5, decay=1.0, floor=0.0)
    full, errors, outs, checked = _speca_run(register, method)
    assert full == [0, 1, 4, 9]
    assert checked == [3, 6, 7, 8]
    want = [None, None, None, None, 6 / 9, None, None, 10 / 36, 18 / 49, 28 / 64]
    assert [None if e is None else pytest.approx(e, abs=1e-6) for e in errors] == want
    # a checked draft returns the block's real output (1 + 9 at step 3); an unchecked one its draft (1 + 2)
    assert outs[2] == pytest.approx(1 + 2) and outs[3] == pytest.approx(1 + 9)
    assert outs[5] == pytest.approx(1 + 16 + 5)


def test_speca_checking_starts_on_draft_min_drafts_plus_one(register):
    """As the reference, the draft counter is compared before it is incremented: min_drafts 2 checks draft 3
    (step 4 after full steps 0, 1), then every draft to the cap (max_drafts 5: step 7 is full); after step 7
    drafts 1 and 2 (steps 8, 9) are unchecked and drafts 3, 4 (steps 10, 11) checked."""
    method = ditcache.SpeCa(order=1, warmup=2, min_drafts=2, max_drafts=5, threshold=1e9, decay=1.0, floor=0.0)
    full, _, _, checked = _speca_run(register, method, steps=12)
    assert full == [0, 1, 7] and checked == [4, 5, 6, 10, 11]


def test_speca_draft_cap():
    """tau never reached: after the warm-up a full step every max_drafts + 1 steps (drafts 2..5 then 6)."""
    full = []
    method = ditcache.SpeCa(order=1, warmup=2, min_drafts=1, max_drafts=4, threshold=1e9)
    store, sites = Store(), [Site("block", "block", 0, nn.Identity(), None)]
    for s in range(12):
        ctx = StepContext(s, 12, s / 11, 1000.0 - s, 0, 1, None)
        if method.plan(ctx, sites, store)[0].action is Action.FULL:
            full.append(s)
    assert full == [0, 1, 6, 11]


def test_speca_tau_over_progress(register):
    """tau(p) = max(tau0 * decay^p, floor): 0.4 * 0.25^0 = 0.4, 0.4 * 0.25^0.5 = 0.2, 0.4 * 0.25 = 0.1 -> floor
    0.15. In a run (tau0 0.9, decay 0.25, 10 steps, p = step / 9): the decision at step 4 reads 0.667 against
    0.9 * 0.25^(4/9) = 0.486: full; step 7 reads 0.278 against 0.9 * 0.25^(7/9) = 0.307: accept; step 8 reads
    0.367 against 0.9 * 0.25^(8/9) = 0.262: full (a flat 0.5 accepted it, test above)."""
    speca = ditcache.SpeCa(threshold=0.4, decay=0.25, floor=0.15)
    assert [speca.tau(p) for p in (0.0, 0.5, 1.0)] == pytest.approx([0.4, 0.2, 0.15])
    method = ditcache.SpeCa(order=1, warmup=2, min_drafts=1, max_drafts=4, threshold=0.9, decay=0.25, floor=0.0)
    full, errors, _, _ = _speca_run(register, method)
    assert full == [0, 1, 4, 8]
    assert errors[7] == pytest.approx(10 / 36) and errors[8] == pytest.approx(18 / 49)


# ----------------------------------------------------------------------------------------------- FreqCa


def _cosine(u: int, v: int, h: int, w: int) -> torch.Tensor:
    """(H * W,) the 2-D cosine of frequency (u, v) on an H x W grid, row-major: cos(pi (2i+1) u / 2H) cos(...)."""
    return torch.tensor([math.cos(math.pi * (2 * i + 1) * u / (2 * h)) * math.cos(math.pi * (2 * j + 1) * v / (2 * w))
                         for i in range(h) for j in range(w)], dtype=torch.float64)


def test_freqca_band_split_on_a_known_field():
    """On a 4 x 4 grid the largest DCT radius is sqrt(3^2 + 3^2) = 4.24; cutoff 0.3 keeps radius <= 1.27:
    (0,0), (0,1), (1,0) (not (1,1): 1.41). A field 2 cos(0,1) + 3 cos(3,3) + 1 (channel 0) splits into its
    low part 2 cos(0,1) + 1 and the rest; the channels are split apart (channel 1: cos(1,1) only, all high)."""
    low_field = 2 * _cosine(0, 1, 4, 4) + 1.0
    x = torch.stack([low_field + 3 * _cosine(3, 3, 4, 4), _cosine(1, 1, 4, 4)], -1)[None]  # (1, 16, 2)
    low = low_band(x, (1, 4, 4), 0.3)
    assert torch.allclose(low[0, :, 0], low_field, atol=1e-12)
    assert torch.allclose(low[0, :, 1], torch.zeros(16, dtype=torch.float64), atol=1e-12)
    # two frames are split one by one: the second frame's field does not leak into the first
    clip = torch.cat([x, 5 * x], 1)                                                     # (1, 32, 2)
    assert torch.allclose(low_band(clip, (2, 4, 4), 0.3)[0, 16:, 0], 5 * low_field, atol=1e-11)


def test_freqca_reuses_the_low_band_and_forecasts_the_high_band():
    """CRF at full step s: s L + s H (L low, H high, both (16,)), full steps 0, 1, 2 (warm-up 3), order 1, sigma
    0.71. The high band's first difference is H per step; HiCache's order-1 term is sigma * H1(sigma delta) =
    2 sigma^2 delta = 1.0082 delta. So delta steps after step 2: 2 L + 2 H + 1.0082 delta H: the low band stays
    at its last value (2 L), reused, while the high band moves on."""
    method = ditcache.FreqCa(interval=4, warmup=3, order=1, cutoff=0.3, sigma=0.71)
    low, high = _cosine(0, 1, 4, 4), _cosine(3, 3, 4, 4)
    store = Store()

    def call(s):
        ctx = StepContext(s, 10, s / 9, 1000.0 - s, 0, 1, (1, 4, 4))
        method.plan(ctx, [], store)
        return method.final(ctx, store, (s * (low + high)).reshape(1, 16, 1))

    assert [call(s) for s in (0, 1, 2)] == [None, None, None]
    for s in (3, 4, 5):
        delta = s - 2
        want = 2 * low + 2 * high + 2 * 0.71**2 * delta * high
        assert torch.allclose(call(s)[0, :, 0], want, atol=1e-9)
    assert call(6) is None  # the counter's next full step: W - 1 + N = 2 + 4


# ----------------------------------------------------------------------------------------------- HyCa


def _textbook(f_n, v_n, v_prev, d, g):
    """Each solver of the paper's pool from its own definition (v_n, v_prev: the last two full-step slopes;
    p = 3/2 v_n - 1/2 v_prev, the AB2 slope that predicts the implicit methods' end slope)."""
    p = 1.5 * v_n - 0.5 * v_prev
    w = d / g
    f_prev = f_n - g * v_n
    return {
        "reuse": f_n,
        "euler": f_n + d * v_n,
        "taylor2": f_n + d * v_n + d * d / 2 * (v_n - v_prev) / g,
        "ab2": f_n + d * (1.5 * v_n - 0.5 * v_prev),
        "rk2": f_n + d * (v_n + v_prev) / 2,
        "am2": f_n + d * (v_n + p) / 2,
        "bdf2": ((1 + w) ** 2 * f_n - w**2 * f_prev + (1 + w) * d * p) / (1 + 2 * w),
    }


@pytest.mark.parametrize("f,delta,want", [
    # s^2 at 0, 4, 8 (v = 4, 12), one step ahead (s = 9, truth 81):
    # reuse 64; euler 64 + 12; taylor2 + 1/2 * 2; ab2 64 + (18 - 2); rk2 64 + 8; am2 p = 16: 64 + 14;
    # bdf2 w = 1/4: (25/16 * 64 - 1/16 * 16 + 5/4 * 16) / (3/2) = 119 / 1.5
    (lambda s: s * s, 1, [64, 76, 77, 80, 72, 78, 119 / 1.5]),
    # 2^(s/4) at 0, 4, 8 (1, 2, 4; v = 0.25, 0.5), three steps ahead (s = 11, truth 6.73):
    # euler 4 + 1.5; taylor2 5.5 + 9/2 * 0.0625; ab2 4 + 3 * 0.625; rk2 4 + 3 * 0.375; am2 4 + 3 * 1.125 / 2;
    # bdf2 w = 3/4: (49/16 * 4 - 9/16 * 2 + 7/4 * 3 * 0.625) / 2.5 = 14.40625 / 2.5
    (lambda s: 2 ** (s / 4), 3, [4, 5.5, 5.78125, 5.875, 5.125, 5.6875, 14.40625 / 2.5]),
])
def test_hyca_solvers_on_a_polynomial_and_an_exponential(f, delta, want):
    """Channel k takes solver k of the pool; full steps at 0, 4 and 8 (differences to order 2, in steps)."""
    assert POOL == ("reuse", "euler", "taylor2", "ab2", "rk2", "am2", "bdf2")
    mix = ChannelMix({0: torch.arange(len(POOL))})
    history = mix.new_history((0, 0))
    prev = None
    for s in (0, 4, 8):
        out = (torch.full((1, 1, len(POOL)), float(f(s)), dtype=torch.float64),)
        mix.update(history, prev, out, (Coords(float(s), s), None), 2)
        prev = out
    got = mix.predict(history, prev, Coords(8.0 + delta, 8 + delta), 2)[0].flatten().tolist()
    assert got == pytest.approx(want, rel=1e-12)
    v_n, v_prev = (f(8) - f(4)) / 4, (f(4) - f(0)) / 4
    assert want == pytest.approx(list(_textbook(f(8), v_n, v_prev, delta, 4).values()), rel=1e-12)


def test_hyca_loads_a_calibration_made_with_the_old_pool():
    """Indices refer to the pool the calibration recorded: index 4 of the old pool is 'damped' (half slope):
    full at 0 (0) and 4 (8), two steps ahead 8 + 2 * 2 / 2 = 10."""
    mix = ChannelMix({0: torch.tensor([4])}, ("reuse", "euler", "taylor2", "ab2", "damped", "hermite"))
    history = mix.new_history((0, 0))
    a, b = (torch.zeros(1, 1, 1),), (torch.full((1, 1, 1), 8.0),)
    mix.update(history, None, a, (Coords(0.0, 0), None), 2)
    mix.update(history, a, b, (Coords(4.0, 4), None), 2)
    assert float(mix.predict(history, b, Coords(6.0, 6), 2)[0]) == pytest.approx(10.0)


def test_hyca_binds_the_pool_its_calibration_recorded():
    """A calibration's indices name the pool it recorded: the shipped `dit` calibration, retrained on the paper's
    pool, binds that pool (a calibration made with the former pool binds its own: the test above)."""
    from ditcache.adapters import find_sites
    from ditcache.methods.artifacts import load_artifact
    from ditcache.models import load_default

    model = load_default("dit").transformer
    method = ditcache.HyCa(artifact="dit")
    method.bind(model, find_sites(model))
    assert method.forecast.pool == tuple(load_artifact("dit", "hyca").config["pool"])
    assert method.forecast.pool == ("reuse", "euler", "taylor2", "ab2", "rk2", "am2", "bdf2")


def test_hyca_bind_reads_solver_names_from_the_calibration_not_the_current_pool(tmp_path):
    """The same indices saved with the former pool's names (index 4 'damped', 5 'hermite') bind those names."""
    from ditcache.adapters import find_sites
    from ditcache.methods.artifacts import load_artifact
    from ditcache.models import load_default

    art = load_artifact("dit", "hyca")
    old = ("reuse", "euler", "taylor2", "ab2", "damped", "hermite", "bdf2")
    art.config["pool"] = list(old)
    path = art.save(tmp_path / "hyca_old.safetensors")
    model = load_default("dit").transformer
    method = ditcache.HyCa(artifact=str(path))
    method.bind(model, find_sites(model))
    assert method.forecast.pool == old


def test_hyca_calibration_picks_the_least_error_solver_per_cluster():
    """A constructed site of 4 channels over 20 steps, warm-up 2, interval 4 (full 0, 1, 5, 9, 13, 17): two
    channels flip sign every step (1 +- 0.5, 2 +- 0.5), two grow as s^2 (0.05 s^2, 0.1 s^2). The descriptors
    (jerk and curvature ratios above all) put the flippers in one cluster and the parabolas in the other; each
    cluster then gets the solver whose squared error, summed over its channels and skipped steps, is least,
    here computed from the solvers' definitions (``_textbook``) on the full steps' slopes (the first window,
    after steps 0 and 1, has one slope: v_prev = v_n)."""
    values = [torch.tensor([1 + 0.5 * (-1) ** s, 2 + 0.5 * (-1) ** s, 0.05 * s * s, 0.1 * s * s], dtype=torch.float64)
              for s in range(20)]
    cal = SiteCalibration()
    for s, v in enumerate(values):
        cal.observe(s, (v.reshape(1, 1, 4),), counter_full(s, 2, 4), kept_order(s, 2, 2))
    cal.finish()
    solvers, labels = cal.assign(2, seed=0)
    assert labels[0] == labels[1] != labels[2] == labels[3]

    errors = torch.zeros(len(POOL), 4, dtype=torch.float64)
    full = [s for s in range(20) if counter_full(s, 2, 4)]
    for s in range(20):
        if s in full:
            continue
        n, m = [f for f in full if f < s][-1], [f for f in full if f < s][-2]  # the last two full steps
        g = n - m
        v_n = (values[n] - values[m]) / g
        earlier = [f for f in full if f < m]
        v_prev = (values[m] - values[earlier[-1]]) / (m - earlier[-1]) if earlier else v_n
        for k, pred in enumerate(_textbook(values[n], v_n, v_prev, s - n, g).values()):
            errors[k] += (pred - values[s]) ** 2
    assert torch.allclose(cal.errors, errors, rtol=1e-9)  # every solver scored over every skipped step
    for cluster in (labels[0], labels[2]):
        members = labels == cluster
        assert (solvers[members] == int(errors[:, members].sum(1).argmin())).all()
    assert int(solvers[0]) != int(solvers[2])  # the two kinds of channel do not share a solver


# ----------------------------------------------------------------------------------------------- FoCa


def _fit(forecaster, points):
    store = Store(forecaster)
    for x, fx in points:
        store.update((0, 0), torch.tensor([[[float(fx)]]]), Coords(float(x), int(x)), 1)
    return store


def _step(store, x):
    out = store.predict((0, 0), Coords(float(x), x), 1)
    store.commit((0, 0), out, Coords(float(x), x))
    return float(out[0])


def test_foca_bdf2_heun_formula():
    """Full steps 0 (F_p = 2) and 4 (F_c = 6): D = 4, g = 4, r = e / 4.
    e = 1: BDF2 P = 4/3 * 6 - 1/3 * 2 + 2/3 * 0.25 * 4 = 8; Heun H = 6 + (1 + (8 - 6)) / 2 = 7.5;
    0.75 H + 0.25 P = 7.625. e = 2: P = 22/3 + 4/3 = 26/3; H = 6 + (2 + 8/3) / 2 = 25/3; 0.75 H + 0.25 P = 8.4167.
    e = 4 (r = 1): P = 10, H = 10: the line's next point, exactly. Forecasts never feed back (e = 2 after a
    committed e = 1 is still 8.4167). Before two full steps: the last output."""
    assert FoCa().slope == "bdf2"
    assert _step(_fit(FoCa(), [(0, 2)]), 1) == 2.0
    store = _fit(FoCa(), [(0, 2), (4, 6)])
    assert [_step(store, x) for x in (5, 6, 8)] == pytest.approx([7.625, 8.0 + 5 / 12, 10.0])


def test_foca_cachedit_form_is_kept():
    """cache-dit's FoCaState: full at 0, 1 (0, 1): D_f = 1, D_c = 1 -> P = 1 + (e/2)(2) = 1 + e up to e = 3;
    beyond, 1 + 1.5 (3/4) (D_f + D_c) = 3.25 with D_c from the committed forecasts (4 - 3)."""
    store = _fit(FoCa(slope="cachedit"), [(0, 0), (1, 1)])
    assert [_step(store, x) for x in (2, 3, 4, 5)] == [2.0, 3.0, 4.0, 3.25]


# ----------------------------------------------------------------------------------------------- ToCa


def _reference_toca_dit(steps: int, interval: int, w: float, sensitive: tuple[float, float]) -> list[int]:
    """The reference DiT code's rule, written from it: s counts down from T - 1; the first step is full and so is
    any step with s % N_t == 0, N_t = round(N / (1 + w - 2 w s / T)) set at each full step (2 in the sensitive
    window of p = 1 - s / T)."""
    full, n_t = [], None
    for step in range(steps):
        s = steps - 1 - step
        if step == 0 or s % n_t == 0:
            full.append(step)
            n_t = round(interval / (1 + w - 2 * w * s / steps))
            if sensitive[0] <= 1 - s / steps < sensitive[1]:
                n_t = 2
    return full


def test_toca_modulo_schedule_is_the_references_and_the_counter_is_named_apart():
    """The dit preset (N 3, w 0.4, sensitive window 0.6..0.8) on 50 steps. The reference's rule gives
    0, 4, 5, 9, ...: after step 0 N_t = round(3 / 0.616) = 5 and s = 45 (step 4) is a multiple of 5; there
    N_t = round(3 / 0.68) = 4 and s = 44 (step 5) is a multiple of 4, so steps 4 and 5 are both full.
    schedule="modulo" follows it; the default counter (next full = this full + interval(p)) does not."""
    reference = _reference_toca_dit(50, 3, 0.4, (0.6, 0.8))
    assert reference[:6] == [0, 4, 5, 9, 13, 17] and reference[-1] == 49
    modulo = ditcache.ToCa.preset("dit", schedule="modulo")
    counter = ditcache.ToCa.preset("dit")
    for method, want in ((modulo, reference), (counter, None)):
        state = {"next_full": 0}
        got = [s for s in range(50) if method.full_step(s, 50, s / 49, state)]
        if want is not None:
            assert got == want
        else:  # the deviation: every gap is the interval asked for, so no back-to-back full steps early on
            assert got[:6] == [0, 5, 9, 13, 17, 20] and got != reference


def test_toca_modulo_schedule_in_a_run():
    """The same list from a real run's records (dit-tiny, 50 steps, the dit preset at fresh ratio 0: reuse)."""
    from ditcache import zoo
    from ditcache.sampling import sample

    model = zoo.build("dit-tiny")
    noise, cond, uncond = zoo.conditioning("dit-tiny", 1)
    with ditcache.cached(model, ditcache.ToCa.preset("dit", schedule="modulo", fresh_ratio=0.0)) as run:
        sample(model, noise, cond, uncond, steps=50, guidance_scale=2.0)
    full = [r.step for r in run.stats.records if r.branch == 0 and all(a == "full" for a in r.actions)]
    assert full == _reference_toca_dit(50, 3, 0.4, (0.6, 0.8))
