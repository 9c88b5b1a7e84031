"""Every mapped diffusers transformer class, on a tiny config built in-process (tests/tiny/): the exact path
stays exact, FORA cuts the FLOPs the sites account for, TaylorSeer forecasts, the token methods run where a
token path exists and are refused by name where none does, and remove() restores every forward."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import torch

import ditcache
import tiny
from ditcache import adapters
from ditcache.engine import flop_counter
from tiny.case import Case

STEPS = 6
TIMESTEPS = [999.0, 833.0, 666.0, 500.0, 333.0, 166.0]
BATCH = 2


def _cases() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for info in sorted(pkgutil.iter_modules(tiny.__path__), key=lambda i: i.name):
        if info.name == "case":
            continue
        for name, case in importlib.import_module(f"tiny.{info.name}").CASES.items():
            assert name not in cases, f"{name} has two tiny cases"
            cases[name] = case
    return cases


CASES = _cases()
VARIANTS = [(n, v) for n, c in CASES.items() for v in c.variants]


def _inputs(case: Case, model, variant: str | None = None) -> dict:
    gen = torch.Generator().manual_seed(0)
    kwargs = case.inputs(model, BATCH, gen)
    if variant is not None:
        kwargs.update(case.variants[variant](model, BATCH, gen))
    return kwargs


def _loop(case: Case, model, kwargs: dict) -> list[torch.Tensor]:
    """One 6-step generation: the model called once per timestep with the same inputs."""
    return [case.call(model, kwargs, t, BATCH) for t in TIMESTEPS]


def _cached(case: Case, model, kwargs: dict, method) -> tuple[list[torch.Tensor], ditcache.Run]:
    with ditcache.cached(model, method, steps=STEPS, count_flops=case.flops) as run:
        outs = _loop(case, model, kwargs)
    return outs, run


def _patched(model) -> list[str]:
    return [name for name, m in model.named_modules() if "forward" in m.__dict__]


@pytest.fixture(scope="module")
def built():
    return {}


def _model(built: dict, name: str):
    if name not in built:
        built[name] = CASES[name].build()
    return built[name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_exact_path_is_bit_identical(name, built):
    """NoCache and FORA(1) compute every site: the outputs equal the unhooked model's, bit for bit."""
    case, model = CASES[name], _model(built, name)
    kwargs = _inputs(case, model)
    ref = _loop(case, model, kwargs)
    assert all(torch.isfinite(r).all() for r in ref)
    for method in (ditcache.NoCache(), ditcache.FORA(interval=1)):
        outs, run = _cached(case, model, kwargs, method)
        assert all(torch.equal(o, r) for o, r in zip(outs, ref)), f"{name}: {method.name} is not exact"
        assert run.stats.counts()["full"] == STEPS * len(run.sites)
    assert _patched(model) == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_fora_cuts_the_flops_of_its_sites(name, built):
    """FORA(3) over 6 steps computes steps 0, 2 and 5 (the reference's count-down rule: step 0, and every
    step whose s = 5 - step is a multiple of 3) and reuses every site on steps 1, 3 and 4. So it runs
    6 F - 3 S FLOPs, with F one uncached call and S what the site modules execute in it (both counted here
    by torch on the unhooked model); gated whole-block sites add their gate (a norm and a linear on the
    timestep embedding) on reuse steps, a few percent of S at most. Blocks with a lean rule skip, on reuse
    steps, the norms that only feed their branches: at most 3 M fewer, with M the FLOPs of those blocks' norm
    modules in one call (SD3's last block: the linear of its context norm)."""
    case, model = CASES[name], _model(built, name)
    kwargs = _inputs(case, model)
    sites = adapters.find_sites(model)
    if not case.flops:  # (its attention cannot run under torch's counter: the schedule alone is checked)
        _, run = _cached(case, model, kwargs, ditcache.FORA(interval=3))
        assert [r.step for r in run.stats.records if all(a == "full" for a in r.actions)] == [0, 2, 5]
        return
    lean_blocks = {id(x.block): x.block for x in sites if x.kind != "block" and adapters.lean_rule(x.block)}
    norms = [m for b in lean_blocks.values() for n, m in b.named_children() if n.startswith("norm")]
    per_site = [0] * (len(sites) + len(norms))  # the sites', then the lean blocks' norms'
    handles = []
    with flop_counter() as counter:
        for i, module in enumerate([*(x.module for x in sites), *norms]):
            start = {}
            handles.append(module.register_forward_pre_hook(
                lambda m, a, i=i, start=start: start.__setitem__(i, counter.get_total_flops())))
            handles.append(module.register_forward_hook(
                lambda m, a, o, i=i, start=start: per_site.__setitem__(i, per_site[i] + counter.get_total_flops()
                                                                       - start[i])))
        try:
            case.call(model, kwargs, TIMESTEPS[0], BATCH)
        finally:
            for h in handles:
                h.remove()
        full = counter.get_total_flops()
    s, lean_norms = sum(per_site[:len(sites)]), sum(per_site[len(sites):])
    assert 0 < s <= full
    outs, run = _cached(case, model, kwargs, ditcache.FORA(interval=3))
    assert [r.step for r in run.stats.records if all(a == "full" for a in r.actions)] == [0, 2, 5]
    expected = 6 * full - 3 * s
    gated = any(adapters.block_spec(x.block).finish for x in sites if x.kind == "block")
    if gated:
        assert expected - 3 * lean_norms <= run.stats.flops <= expected + 0.05 * 3 * s
    elif lean_norms:
        assert expected - 3 * lean_norms <= run.stats.flops <= expected
    else:
        assert run.stats.flops == expected
    assert all(o.shape == r.shape and torch.isfinite(o).all() for o, r in zip(outs, _loop(case, model, kwargs)))


def test_lean_blocks_match_their_forwards(built):
    """Every tiny class with a block served by a lean rule: FORA(3)'s outputs with the lean path equal those
    with every block running its own forward (lean off), up to fused multiply-add rounding; and every lean
    rule is reached by at least one class (a rule no case reaches would go untested)."""
    served = set()
    for name in sorted(CASES):
        case, model = CASES[name], _model(built, name)
        rules = {adapters.block_spec(s.block).lean for s in adapters.find_sites(model) if s.kind != "block"
                 and adapters.lean_rule(s.block)}
        if not rules:
            continue
        served |= rules
        kwargs = _inputs(case, model)
        blocks = {id(s.block): s.block for s in adapters.find_sites(model) if s.kind != "block"}.values()
        outs, calls = {}, []  # calls: every block's output at every call, all streams (a text stream ends unused)
        handles = [b.register_forward_hook(lambda m, a, out: calls.append(out)) for b in blocks]
        try:
            for lean in (True, False):
                calls.clear()
                with ditcache.cached(model, ditcache.FORA(interval=3), steps=STEPS, count_flops=False) as run:
                    run.executor.lean = lean
                    outs[lean] = (_loop(case, model, kwargs), list(calls))
        finally:
            for h in handles:
                h.remove()
        torch.testing.assert_close(outs[True], outs[False], rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    # the family files' rules; those registered through register_block(lean=...) ("user:" keys: U-ViT's, tested
    # in test_seed_models) serve no diffusers class
    assert served == {k for k in adapters.LEAN if not k.startswith("user:")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_taylorseer_forecasts(name, built):
    case, model = CASES[name], _model(built, name)
    kwargs = _inputs(case, model)
    outs, run = _cached(case, model, kwargs, ditcache.TaylorSeer(interval=2, order=1, warmup=2))
    # the reference's counter: steps 0 and 1 warm up; the counter, reset at each full step, reaches
    # interval - 1 = 1 at steps 3 and 5; every site forecasts at the two steps between (2 and 4)
    assert {r.step: set(r.actions) for r in run.stats.records} == {
        0: {"full"}, 1: {"full"}, 2: {"forecast"}, 3: {"full"}, 4: {"forecast"}, 5: {"full"}}
    ref = _loop(case, model, kwargs)
    assert all(o.shape == r.shape and torch.isfinite(o).all() for o, r in zip(outs, ref))
    assert not all(torch.equal(o, r) for o, r in zip(outs, ref))  # a forecast step is not the computed one


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("method", ["toca", "clusca"])
def test_token_methods_run_or_are_refused(name, method, built):
    case, model = CASES[name], _model(built, name)
    kwargs = _inputs(case, model)
    sites = adapters.find_sites(model)
    m = (ditcache.ToCa(interval=3, fresh_ratio=0.3, score="random") if method == "toca"
         else ditcache.ClusCa(interval=3, clusters=4, warmup=1))
    token_mlp = any(s.partial and s.kind == "mlp" and s.stream == "image" and s.role == "spatial" for s in sites)
    token_any = any(s.partial for s in sites)
    if (method == "toca" and token_any) or (method == "clusca" and token_mlp):
        outs, run = _cached(case, model, kwargs, m)
        # full steps: ToCa's interval at progress 0 is round(3 / (0.6 + 0.8 * 0)) = 5, so steps 0 and 5; ClusCa
        # runs TaylorSeer's counter with one warm-up step: 0 and 3. No site computes in full between them. ClusCa
        # refreshes a token subset at every cached step; ToCa's step factor -1 + 4p is negative at p = 1/6 (step
        # 1: every branch reused whole) and positive from step 2 on.
        full = [0, 5] if method == "toca" else [0, 3]
        by_step = {r.step: set(r.actions) for r in run.stats.records}
        assert [s for s, a in by_step.items() if a == {"full"}] == full
        partial = [s for s, a in by_step.items() if "partial" in a]
        assert "full" not in set().union(*(by_step[s] for s in range(STEPS) if s not in full))
        assert partial == ([2, 3, 4] if method == "toca" else [1, 2, 4, 5])
        assert all(torch.isfinite(o).all() for o in outs)
    else:
        with pytest.raises(ValueError, match="ToCa|ClusCa"):
            _cached(case, model, kwargs, m)
        assert _patched(model) == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_toca_default_attention_score_runs_or_is_refused_by_name(name, built):
    """ToCa's default score recomputes each refreshed block's attention (rotary, GQA, joint streams as the
    family's processor does them): it runs, or it is refused before any step with the reason, never with a shape
    error mid-generation."""
    case, model = CASES[name], _model(built, name)
    if not any(s.partial for s in adapters.find_sites(model)):
        return  # no token path at all: the test above covers the refusal
    kwargs = _inputs(case, model)
    try:
        _, run = _cached(case, model, kwargs, ditcache.ToCa(interval=3, fresh_ratio=0.3))
    except ValueError as e:
        assert "ToCa(score='attention')" in str(e) and _patched(model) == []
        return
    assert [r.step for r in run.stats.records if "partial" in r.actions] == [2, 3, 4]  # as in the test above


@pytest.mark.parametrize("name", sorted(CASES))
def test_remove_restores_every_forward(name, built):
    model = _model(built, name)
    originals = {n: m.forward for n, m in model.named_modules()}
    run = ditcache.apply(model, ditcache.FORA(interval=2), steps=4)
    lean = {id(s.block) for s in run.sites if s.kind != "block" and adapters.lean_rule(s.block)}
    assert len(_patched(model)) == len(run.sites) + len(lean) + 1  # every site, every lean block, the model
    run.remove()
    assert _patched(model) == [] and {n: m.forward for n, m in model.named_modules()} == originals


@pytest.mark.parametrize("name,variant", VARIANTS)
def test_variant_inputs(name, variant, built):
    """The class's own extra inputs (VACE hints, reference frames, history latents): the exact path stays
    exact, and a cached run keeps the output's shape."""
    case, model = CASES[name], _model(built, name)
    kwargs = _inputs(case, model, variant)
    ref = _loop(case, model, kwargs)
    outs, _ = _cached(case, model, kwargs, ditcache.FORA(interval=1))
    assert all(torch.equal(o, r) for o, r in zip(outs, ref))
    outs, run = _cached(case, model, kwargs, ditcache.FORA(interval=3))
    # FORA counts back from the last step: full at 5, 2 and the first step 0; every site reuses at 1, 3, 4
    assert run.stats.counts()["reuse"] == 3 * len(run.sites) and run.stats.counts()["full"] == 3 * len(run.sites)
    assert all(o.shape == r.shape and torch.isfinite(o).all() for o, r in zip(outs, ref))
