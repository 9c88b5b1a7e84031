"""The peers (diffusers caches, cache-dit) applied through ditcache.peers on tiny random models: they skip work,
remove() restores the model exactly, misses and misfits fail loudly."""

import importlib.util
import itertools
import warnings

import pytest
import torch

import ditcache
from ditcache import zoo
from ditcache.engine import flop_counter
from ditcache.peers import PEERS, PeerError, generate_with_peer, make_peer, peer_versions
from ditcache.sampling import make_scheduler, sample

STEPS = 10
CFG = 3.0

# One setting per peer that skips work on both dit-tiny and flux-tiny at 10 steps (measured): the tiny random
# models change fast between steps, so the dynamic peers need thresholds above their sweep's.
TINY = {
    "fbcache": {"threshold": 0.5},
    "pab": {"spatial_attention_block_skip_range": 2},
    "fastercache": {"spatial_attention_block_skip_range": 2, "is_guidance_distilled": True},
    "diffusers-taylorseer": {"cache_interval": 2, "disable_cache_before_step": 2, "max_order": 1},
    "magcache": {"threshold": 0.12, "max_skip_steps": 3, "retention_ratio": 0.2},
    "dbcache": {"Fn_compute_blocks": 1, "Bn_compute_blocks": 0, "max_warmup_steps": 2,
                "residual_diff_threshold": 0.5},
    "dbcache-taylorseer": {"Fn_compute_blocks": 1, "Bn_compute_blocks": 0, "max_warmup_steps": 2,
                           "residual_diff_threshold": 0.5, "taylorseer_order": 1},
    "dbcache-foca": {"Fn_compute_blocks": 1, "Bn_compute_blocks": 0, "max_warmup_steps": 2,
                     "residual_diff_threshold": 0.5},
    "dbcache-dmd": {"Fn_compute_blocks": 1, "Bn_compute_blocks": 0, "max_warmup_steps": 2,
                    "residual_diff_threshold": 0.5},
    "seacache": {"threshold": 1.0, "max_consecutive_cached": 6},
    "textkv": {},  # refused on DiT and Flux (it hooks NucleusMoE-Image blocks only; tests/test_new_methods.py)
}
REFUSED = {"textkv": "found no module to hook"}  # peers that cannot run on dit-tiny and flux-tiny, and why

# Which steps (= model calls: one per step, CFG batched) each peer changes, from its TINY setting and the rules in
# its own documentation, given the sampler's timesteps ts. A changed step's output differs from the uncached
# model's on the same input; every other step must give that output exactly.
# - diffusers TaylorSeer computes s < D or (s - D - 1) % N == 0 (D = 2, N = 2): 0, 1, 3, 5, 7, 9; forecasts the rest.
# - PAB reuses attention on iteration i > 0 iff 100 < t < 800 (its default window) and i % 2 != 0 (range 2).
# - FasterCache (attention-only mode) extrapolates attention iff -1 < t < 681 (its default window) and not
#   (i > 0 and i % 2 == 0) (range 2).
RULES = {
    "diffusers-taylorseer": lambda ts: [s for s in range(len(ts)) if not (s < 2 or (s - 3) % 2 == 0)],
    "pab": lambda ts: [i for i, t in enumerate(ts) if i > 0 and 100 < t < 800 and i % 2 != 0],
    "fastercache": lambda ts: [i for i, t in enumerate(ts) if -1 < t < 681 and not (i > 0 and i % 2 == 0)],
}
# The dynamic peers decide from the model's features; what their settings fix is the leading steps they always
# compute (FBCache and SeaCache: step 0, with nothing cached; MagCache: retention_ratio 0.2 of 10 steps; DBCache:
# max_warmup_steps 2), and the steps they change must be exactly the ones they report as skipped.
ALWAYS_COMPUTED = {"fbcache": 1, "seacache": 1, "magcache": 2, "dbcache": 2, "dbcache-taylorseer": 2,
                   "dbcache-foca": 2, "dbcache-dmd": 2}
MOST_IN_A_ROW = {"magcache": 3, "seacache": 6}  # max_skip_steps, max_consecutive_cached


def _needs(peer: str) -> None:
    """cache-dit is in the peers extra, which the README's test command installs: a missing one fails loudly."""
    if PEERS[peer].package == "cache-dit":
        import cache_dit  # noqa: F401


def _setup(name: str):
    model = zoo.build(name)
    noise, cond, uncond = zoo.conditioning(name, 2)
    return model, noise, cond, uncond


def _uncached(model, noise, cond, uncond):
    return sample(model, noise, cond, uncond, steps=STEPS, guidance_scale=CFG)


def _flops(fn) -> int:
    with flop_counter() as counter:
        fn()
    return counter.get_total_flops()


def _recorded(model, fn) -> list[tuple]:
    """Runs fn, keeping every top-level model call: (args, kwargs, output)."""
    calls = []

    def keep(module, args, kwargs, output):
        out = output[0] if isinstance(output, tuple) else output.sample
        calls.append((args, dict(kwargs), out.clone()))

    handle = model.register_forward_hook(keep, with_kwargs=True)
    try:
        fn()
    finally:
        handle.remove()
    return calls


def _changed_steps(model, calls) -> list[int]:
    """The calls whose output differs from the (now uncached) model's output on the same input."""
    with torch.no_grad():
        return [i for i, (args, kwargs, out) in enumerate(calls)
                if not torch.equal(model(*args, **kwargs)[0], out)]


def _leftovers(model) -> list[str]:
    """Instance-level traces a peer could leave: patched forwards, hook registries, cache-dit attributes."""
    prefixes = ("_diffusers_hook", "_ditcache_peer", "_is_patched", "_context", "_cache")
    return [f"{n}.{a}" for n, m in model.named_modules() for a in vars(m)
            if a == "forward" or a.startswith(prefixes)]


def test_registry_is_complete():
    assert set(PEERS) == {"fbcache", "pab", "fastercache", "diffusers-taylorseer", "magcache", "dbcache",
                          "dbcache-taylorseer", "dbcache-foca", "dbcache-dmd", "seacache", "textkv"}
    assert set(TINY) == set(PEERS)
    for spec in PEERS.values():
        assert spec.package in ("diffusers", "cache-dit") and spec.label and spec.sweep


@pytest.mark.parametrize("name", ["dit-tiny", "flux-tiny"])
@pytest.mark.parametrize("peer", sorted(PEERS))
def test_peer_skips_work_and_remove_restores(peer, name):
    _needs(peer)
    model, noise, cond, uncond = _setup(name)
    ref = _uncached(model, noise, cond, uncond)
    ref_flops = _flops(lambda: _uncached(model, noise, cond, uncond))
    state_keys = set(model.state_dict())

    if peer in REFUSED:
        with pytest.raises(PeerError, match=REFUSED[peer]):
            make_peer(peer, model, TINY[peer], STEPS)
        assert _leftovers(model) == []
        return
    run = make_peer(peer, model, TINY[peer], STEPS)
    run.prepare(noise, cond, uncond, CFG)  # MagCache calibrates here, so the counted generation is the cached one
    out = None

    def gen():
        nonlocal out
        out = generate_with_peer(run, model, noise, cond, uncond, STEPS, CFG)

    flops = _flops(gen)
    again = None

    def gen_again():
        nonlocal again
        again = generate_with_peer(run, model, noise, cond, uncond, STEPS, CFG)

    calls = _recorded(model, gen_again)
    summary = run.summary()
    run.remove()

    assert flops < ref_flops, f"{peer} skipped no work on {name}"
    assert torch.equal(again, out), "two generations in a row differ: reset() does not clear the peer's state"
    changed = _changed_steps(model, calls)
    assert len(calls) == STEPS
    if peer in RULES:
        scheduler = make_scheduler(model)
        scheduler.set_timesteps(STEPS)
        expected = RULES[peer]([float(t) for t in scheduler.timesteps])
        assert expected and changed == expected, (peer, name, changed, expected)
    else:
        assert changed and changed == summary["skipped_steps"], (peer, name, changed, summary)
        assert min(changed) >= ALWAYS_COMPUTED[peer]
        if peer in MOST_IN_A_ROW:
            in_a_row = list(itertools.accumulate(range(STEPS), lambda n, s: n + 1 if s in changed else 0,
                                                 initial=0))
            assert max(in_a_row) <= MOST_IN_A_ROW[peer]
    assert torch.equal(_uncached(model, noise, cond, uncond), ref), "remove() did not restore the model"
    assert set(model.state_dict()) == state_keys
    assert _leftovers(model) == []


def test_peer_that_computes_everything_is_exact():
    """FirstBlockCache with a threshold nothing passes runs every block: the output is the uncached one."""
    model, noise, cond, uncond = _setup("dit-tiny")
    run = make_peer("fbcache", model, {"threshold": 0.0}, STEPS)
    out = generate_with_peer(run, model, noise, cond, uncond, STEPS, CFG)
    assert run.summary()["skipped_calls"] == 0
    run.remove()
    assert torch.equal(out, _uncached(model, noise, cond, uncond))


def test_magcache_calibrates_once_for_this_model_and_steps():
    model, noise, cond, uncond = _setup("dit-tiny")
    run = make_peer("magcache", model, TINY["magcache"], STEPS)
    generate_with_peer(run, model, noise, cond, uncond, STEPS, CFG)
    ratios = run.summary()["mag_ratios"]
    generate_with_peer(run, model, noise, cond, uncond, STEPS, CFG)
    assert len(ratios) == STEPS and run.summary()["mag_ratios"] == ratios
    run.remove()


def test_unknown_peer_lists_names():
    model = zoo.build("dit-tiny")
    with pytest.raises(KeyError, match="fbcache") as info:
        make_peer("teacache", model, {}, STEPS)
    assert all(name in str(info.value) for name in PEERS)


def test_fbcache_on_sd3_fails_informatively_and_restores():
    """diffusers' FirstBlockCache crashes on SD3 (its last block returns None for the text stream)."""
    model, noise, cond, uncond = _setup("sd3-tiny")
    ref = _uncached(model, noise, cond, uncond)
    run = make_peer("fbcache", model, {"threshold": 0.1}, STEPS)
    with pytest.raises(PeerError, match=r"FirstBlockCache.*SD3Transformer2DModel"):
        generate_with_peer(run, model, noise, cond, uncond, STEPS, CFG)
    run.remove()
    assert torch.equal(_uncached(model, noise, cond, uncond), ref)


def test_fastercache_cfg_cache_refuses_flux_packed_tokens():
    model = zoo.build("flux-tiny")
    with pytest.raises(PeerError, match=r"FasterCache.*FluxTransformer2DModel"):
        make_peer("fastercache", model, {}, STEPS)
    assert _leftovers(model) == []


def test_bad_settings_name_the_peer():
    model = zoo.build("dit-tiny")
    with pytest.raises(PeerError, match="FirstBlockCache"):
        make_peer("fbcache", model, {"treshold": 0.1}, STEPS)
    assert _leftovers(model) == []
    if importlib.util.find_spec("cache_dit") is not None:
        with pytest.raises(PeerError, match="DBCache"):
            make_peer("dbcache", model, {"Fn_blocks": 1}, STEPS)
        assert _leftovers(model) == []


def test_one_peer_at_a_time():
    model = zoo.build("dit-tiny")
    run = make_peer("pab", model, TINY["pab"], STEPS)
    with pytest.raises(PeerError, match="PyramidAttentionBroadcast is applied"):
        make_peer("fbcache", model, TINY["fbcache"], STEPS)
    run.remove()
    make_peer("fbcache", model, TINY["fbcache"], STEPS).remove()
    assert _leftovers(model) == []


def test_steps_mismatch_is_refused():
    model, noise, cond, uncond = _setup("dit-tiny")
    run = make_peer("pab", model, TINY["pab"], STEPS)
    with pytest.raises(ValueError, match="steps"):
        generate_with_peer(run, model, noise, cond, uncond, STEPS + 1, CFG)
    run.remove()


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_every_sweep_setting_applies(peer):
    """Each benchmarked setting is accepted by the peer's config on the models the bench runs (DiT, Flux)."""
    _needs(peer)
    for name in ("dit-tiny", "flux-tiny"):
        model = zoo.build(name)
        for settings in PEERS[peer].sweep:
            try:
                run = make_peer(peer, model, settings, STEPS)
            except PeerError as e:  # the documented misfits: FasterCache's CFG-Cache on Flux, TextKVCache here
                assert (peer == "fastercache" and "Flux" in str(e)) or REFUSED.get(peer, "?") in str(e)
                continue
            run.remove()
        assert _leftovers(model) == []


def test_peer_versions():
    versions = peer_versions()
    assert set(versions) == {"diffusers", "cache-dit"}
    assert versions["diffusers"][0].isdigit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import cache_dit  # noqa: F401
        except ImportError:
            assert versions["cache-dit"] == "not installed"
        else:
            assert versions["cache-dit"][0].isdigit()


def test_diffusers_taylorseer_agrees_with_ditcache_on_the_same_schedule():
    """diffusers computes step s iff s < D or (s - D - 1) % N == 0; with N = 2 that is TaylorSeer's counter
    schedule with warm-up D (full 0, 1, 3, 5, ... for D = 2). Both take order-1 differences in step units
    over the same branches, so the two generations agree up to rounding (diffusers sums from zeros)."""
    _needs("diffusers-taylorseer")
    from ditcache.forecast import Taylor

    model, noise, cond, uncond = _setup("dit-tiny")
    peer = make_peer("diffusers-taylorseer", model, {"cache_interval": 2, "disable_cache_before_step": 2,
                                                     "max_order": 1}, steps=10)
    try:
        theirs = generate_with_peer(peer, model, noise, cond, uncond, 10, 3.0)
    finally:
        peer.remove()
    method = ditcache.TaylorSeer(interval=2, order=1, warmup=2, forecast=Taylor(units="step"))
    with ditcache.cached(model, method) as run:
        ours = sample(model, noise, cond, uncond, steps=10, guidance_scale=3.0)
    assert [r.step for r in run.stats.records if r.actions[0] == "full"] == [0, 1, 3, 5, 7, 9]
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert not torch.equal(ours, _uncached(model, noise, cond, uncond))  # both really forecast
