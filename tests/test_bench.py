"""`ditcache bench` end to end on a tiny random-weight model: report, budget, trace/replay, 2 processes."""

import json
import os
import re
import statistics
import subprocess
import sys

import pytest
import torch

from ditcache.bench import BenchConfig, Row, best_under_budget, parse_budget, run_bench
from ditcache.bench.subjects import load_subject
from ditcache.engine import flop_counter
from ditcache.sampling import sample

SMALL = dict(config="dit-tiny", seeds=4, steps=6, batch=2, repeats=1, peers="none", threads=1)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rep = run_bench(BenchConfig(methods="fora,clusca", budget="psnr>=40", trace=True, out=str(out), **SMALL),
                    log=lambda *a: None)
    return rep, out


def test_report_has_every_setting_and_the_files(report):
    rep, out = report
    rows = rep["rows"]
    assert rows[0]["setting"] == "uncached" and rows[0]["wall_speedup"] == 1.0
    assert [r["method"] for r in rows[1:]] == ["fora"] * 3 + ["clusca"] * 2
    assert all(r["error"] is None for r in rows)  # the values of the FORA rows: the test below
    for name in ("report.md", "report.json", "pareto.png"):
        assert (out / name).stat().st_size > 0
    assert "fora:interval=2" in (out / "report.md").read_text()
    assert "budget" in rep and rep["versions"]["diffusers"] == "0.42.1"


def _fora_by_hand(subject, seeds: list[int], full: set[int]) -> tuple[torch.Tensor, int]:
    """FORA written out on the bare model, without ditcache's engine: each block's attn1 and ff (DiT's branches)
    run on the steps in ``full`` and return their last output on the others (the block applies the step's gate).
    The sampler calls the model once per step (CFG batched). Returns the latents and the FLOPs torch counted."""
    model = subject.transformer
    branches = {n: m for n, m in model.named_modules() if re.fullmatch(r"transformer_blocks\.\d+\.(attn1|ff)", n)}
    step, last = [-1], {}
    count_steps = model.register_forward_pre_hook(lambda *_: step.__setitem__(0, step[0] + 1))
    for name, module in branches.items():
        def forward(*args, _name=name, _own=module.forward, **kwargs):
            if step[0] in full:
                last[_name] = _own(*args, **kwargs)
            return last[_name]
        module.forward = forward
    try:
        noise, cond, uncond = subject.inputs(seeds)
        with flop_counter() as counter:
            latents = sample(model, noise, cond, uncond, steps=SMALL["steps"], guidance_scale=subject.guidance)
    finally:
        count_steps.remove()
        for module in branches.values():
            del module.forward
    return latents, counter.get_total_flops()


def test_fora_rows_match_fora_done_by_hand(report):
    """Each FORA row against FORA run by hand on the same model and seeds. Full steps from the reference's rule
    (s == T - 1 or s % N == 0, s = T - 1 - step): on 6 steps N = 2 computes 0, 1, 3, 5; N = 3: 0, 2, 5; N = 5:
    0, 5. FLOP speedup = FLOPs torch counts for the uncached sampler / for the hand-made FORA (a reused step
    still runs the embeddings, norms and modulation); PSNR per image against the uncached latents, 10 log10(range^2
    / MSE) with the range of all uncached latents (the bench's rule for latents), averaged over the 4 images."""
    rep, _ = report
    fora_rows = rep["rows"][1:4]  # the sweep's FORA(2), FORA(3) (the default: named "fora"), FORA(5)
    assert [r["setting"] for r in fora_rows] == ["fora:interval=2", "fora", "fora:interval=5"]
    subject = load_subject("dit", SMALL["config"])
    batches = [[0, 1], [2, 3]]  # seeds 4, batch 2
    ref_flops = 0
    ref = []
    for seeds in batches:
        noise, cond, uncond = subject.inputs(seeds)
        with flop_counter() as counter:
            ref.append(sample(subject.transformer, noise, cond, uncond, steps=SMALL["steps"],
                              guidance_scale=subject.guidance))
        ref_flops += counter.get_total_flops()
    ref = torch.cat(ref).double()  # (4, 4, 8, 8)
    assert rep["rows"][0]["gflops_per_image"] == pytest.approx(ref_flops / 4 / 1e9, rel=1e-12)
    span = float(ref.max() - ref.min())
    for row, (interval, full) in zip(fora_rows, ((2, {0, 1, 3, 5}), (3, {0, 2, 5}), (5, {0, 5}))):
        assert full == {s for s in range(6) if s == 0 or (5 - s) % interval == 0}
        parts = [_fora_by_hand(subject, seeds, full) for seeds in batches]
        flops = sum(f for _, f in parts)
        out = torch.cat([x for x, _ in parts]).double()
        mse = (out - ref).square().flatten(1).mean(1)  # (4,)
        assert (mse > 0).all()
        psnr = float((10 * torch.log10(span**2 / mse)).mean())
        assert row["flop_speedup"] == pytest.approx(ref_flops / flops, rel=1e-12)
        assert row["gflops_per_image"] == pytest.approx(flops / 4 / 1e9, rel=1e-12)
        assert row["psnr"] == pytest.approx(psnr, rel=1e-6)  # the bench averages in float32


def test_replay_of_a_trace_reproduces_the_run(report, tmp_path):
    rep, out = report
    trace = sorted(out.glob("trace_*_clusca.json"))[0]
    setting = json.loads(trace.read_text())["setting"]
    # what was recorded, against ClusCa's rule (not against itself): interval 4, warmup 3 on 6 steps is full on
    # steps 0, 1, 2 (the warm-up; the next, 2 + 4 = 6, is past the end); then each image MLP (ff) computes one
    # token per cluster (8) for each of the 4 rows of the CFG-doubled batch of 2, and attention is forecast
    assert setting.startswith("clusca:interval=4,") and "clusters=8" in setting
    recorded = json.loads(trace.read_text())["generations"]
    assert len(recorded) == 2  # one per batch
    for generation in recorded:
        assert len(generation) == 6
        for step, plans in enumerate(generation):
            assert [p["action"] for p in plans] == (["full"] * 4 if step < 3 else ["forecast", "partial"] * 2)
            assert all(torch.tensor(p["tokens"]).shape == (4, 8) for p in plans if p["action"] == "partial")
    again = run_bench(BenchConfig(replay=str(trace), out=str(tmp_path), **SMALL), log=lambda *a: None)
    original = next(r for r in rep["rows"] if r["setting"] == setting)
    replayed = again["rows"][1]
    assert replayed["method"] == "replay"
    assert replayed["psnr"] == original["psnr"]
    # the replay runs the recorded plans without planning them (ClusCa's k-means): the same model FLOPs, no planning
    assert replayed["plan_gflops_per_image"] == 0 < original["plan_gflops_per_image"]
    model_only = original["gflops_per_image"] - original["plan_gflops_per_image"]
    assert replayed["gflops_per_image"] == pytest.approx(model_only)


def test_budget_picks_the_fastest_setting_that_meets_it():
    rows = [Row("reference", "none", "uncached", psnr=99.0, wall_speedup=1.0),
            Row("ditcache", "fora", "a", psnr=35.0, wall_speedup=2.0),
            Row("ditcache", "fora", "b", psnr=25.0, wall_speedup=3.0),
            Row("ditcache", "fora", "c", psnr=31.0, wall_speedup=2.5),
            Row("peer", "fbcache", "d", psnr=40.0, wall_speedup=1.5, error=None),
            Row("peer", "fbcache", "e", psnr=45.0, wall_speedup=None, error="broke")]
    best = best_under_budget(rows, "psnr>=30")
    assert best["ditcache:fora"].setting == "c" and best["peer:fbcache"].setting == "d"
    assert parse_budget("fd<=1.05x") == [("fd", "<=", 1.05, True)]
    assert parse_budget("psnr>=30,fd<=1.05x") == [("psnr", ">=", 30.0, False), ("fd", "<=", 1.05, True)]
    with pytest.raises(ValueError, match="bad budget"):
        parse_budget("speed>=2")


def test_unknown_method_is_refused(tmp_path):
    with pytest.raises(KeyError, match="unknown method"):
        run_bench(BenchConfig(methods="nope", out=str(tmp_path), **SMALL), log=lambda *a: None)


def test_two_processes_give_the_same_report_as_one(tmp_path):
    args = ["bench", "--config", "dit-tiny", "--random-weights", "--methods", "fora,taylorseer", "--peers", "none",
            "--seeds", "8", "--steps", "5", "--batch", "2", "--repeats", "1", "--threads", "1"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1")
    one = subprocess.run([sys.executable, "-m", "ditcache", *args, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "-m", "ditcache", *args, "--out", str(tmp_path / "two")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a = json.loads((tmp_path / "one" / "report.json").read_text())
    b = json.loads((tmp_path / "two" / "report.json").read_text())
    assert a["processes"] == 1 and b["processes"] == 2
    keys = ("method", "setting", "psnr", "ssim", "gflops_per_image", "flop_speedup", "cache_mib")
    assert [{k: r[k] for k in keys} for r in a["rows"]] == [{k: r[k] for k in keys} for r in b["rows"]]


def test_frechet_reference_equals_the_plain_formula():
    from ditcache import metrics

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 5, generator=g), torch.randn(60, 5, generator=g) * 1.5 + 0.3
    ref = metrics.FrechetReference(*metrics.mean_cov(b))
    assert ref.of(a) == pytest.approx(metrics.frechet_distance(a, b), rel=1e-9)


def test_quality_intervals_are_paired_and_mark_significance():
    """Identical images: every paired difference is exactly 0 (interval [0, 0], not significant). Noise:
    FD far above uncached with an interval excluding 0, and a large feature error."""
    import ditcache
    from ditcache.bench import Quality

    model = ditcache.load_default("dit")
    labels = torch.arange(24) % 10
    ref = model.generate(labels, steps=6, seed=0)
    q = Quality(ref, labels, bootstrap=50)
    same = q.score(ref.clone())
    assert same["fd_delta"] == 0.0 and same["fd_delta_ci"] == (0.0, 0.0) and not same["fd_significant"]
    assert same["featerr"] == 0.0 and same["psnr"] == 99.0 and same["accuracy_delta"] == 0.0
    lo, hi = q.reference_row()["fd_ci"]
    assert lo <= q.ref_fd <= hi
    noise = torch.rand(ref.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    bad = q.score(noise)
    assert bad["fd_significant"] and bad["fd_delta_ci"][0] > 0 and bad["featerr"] > 0.3


def test_peer_flops_leave_out_magcache_calibration(tmp_path):
    """MagCache calibrates with one uncached generation before its first; that generation is setup, not the
    peer's cost: counted, the peer would show about half the uncached FLOP speedup (0.5x with one batch)."""
    cfg = {**SMALL, "seeds": 2, "peers": "magcache"}
    rep = run_bench(BenchConfig(methods="none", out=str(tmp_path), **cfg), log=lambda *a: None)
    rows = [r for r in rep["rows"] if r["method"] == "magcache"]
    assert rows and all(r["error"] is None for r in rows)
    assert all(r["flop_speedup"] >= 1.0 for r in rows)  # skipping can only remove FLOPs


def test_compiled_timing_columns(tmp_path):
    """--compile: the uncached model, each ditcache setting and each peer timed again compiled ('eager' backend:
    dynamo's tracing without inductor's minutes of code generation), each ratio against the compiled uncached
    time; the plans changing every step make dynamo build no graph after the warm-up round (each wrapped
    forward is compiled once, outside ditcache's decisions)."""
    cfg = {**SMALL, "seeds": 2, "peers": "fbcache"}
    rep = run_bench(BenchConfig(methods="fora,taylorseer:interval=3", out=str(tmp_path), speed_only=True,
                                compile="eager", **cfg), log=lambda *a: None)
    ref, *rest = (Row(**r) for r in rep["rows"])
    assert ref.compiled_wall_speedup == 1.0 and ref.compiled_wall_s > 0
    assert ref.extra["compiled_graphs_after_warmup"] == 0
    ours = [r for r in rest if r.kind == "ditcache" and not r.error]
    assert len(ours) == 4  # fora's three intervals and the one TaylorSeer setting
    peers = [r for r in rest if r.kind == "peer" and not r.error]
    assert peers and all(r.wall_s is not None for r in peers)
    for r in ours + peers:
        assert r.compiled_wall_speedup == pytest.approx(ref.compiled_wall_s / r.compiled_wall_s)
        assert r.extra["compiled_graphs_after_warmup"] == 0
    md = (tmp_path / "report.md").read_text()
    assert "| compiled s/batch | compiled x |" in md and "backend='eager'" in md
    assert "A peer is compiled whole with its hooks" in md and "Dynamo built no graph during the timed rounds" in md


def test_a_block_graph_traced_for_a_peers_copy_fails_our_compiled_row_and_the_sweep_goes_on(tmp_path):
    """FasterCache on a compiled copy of FLUX makes dynamo compile the single-stream block's forward on its own
    (its hooks break the graph), without ditcache's hook on the block's pre-gate output; dynamo does not guard on
    module hooks, so the next round's ditcache run on the original reuses that graph. That run used to stop the
    whole bench with "KeyError: 3"; now its row keeps its eager columns and records the error, which names the
    cause, and the other rows get their compiled times."""
    import torch._dynamo

    torch._dynamo.reset()
    cfg = {**SMALL, "config": "flux-tiny", "seeds": 2, "steps": 8, "peers": "fastercache"}
    rep = run_bench(BenchConfig(methods="fora:interval=2", out=str(tmp_path), speed_only=True, compile="eager",
                                **cfg), log=lambda *a: None)
    torch._dynamo.reset()  # the graphs traced here are not the next test's
    ref, ours, peer = (Row(**r) for r in rep["rows"] if not r["error"])
    assert (ours.kind, peer.kind, peer.method) == ("ditcache", "peer", "fastercache")
    assert ours.wall_s > 0 and ours.compiled_wall_s is None  # eager columns kept, compiled ones empty
    assert ours.extra["compiled_error"].startswith("RuntimeError: single_transformer_blocks.")
    assert "without ditcache's hook on its pre-gate output" in ours.extra["compiled_error"]
    assert ref.compiled_wall_s > 0 and peer.compiled_wall_speedup == pytest.approx(
        ref.compiled_wall_s / peer.compiled_wall_s)
    assert "Failed compiled (eager columns only): fora `fora:interval=2` (RuntimeError" in \
        (tmp_path / "report.md").read_text()


def test_a_setting_that_fails_in_the_timed_rounds_is_recorded_and_not_called_again():
    from ditcache.bench.running import guarded, time_interleaved

    calls = {"ok": 0, "bad": 0}

    def ok():
        calls["ok"] += 1
        return 0.25  # reports its own seconds

    def bad():
        calls["bad"] += 1
        raise ValueError("no graph")

    safe, failed = guarded({"ok": ok, "bad": bad})
    times = time_interleaved(safe, repeats=2, warmup=1)
    assert times["ok"] == [0.25, 0.25] and calls == {"ok": 3, "bad": 1}
    assert failed == {"bad": "ValueError: no graph"}


def test_a_compiled_peer_makes_the_eager_peers_images_and_leaves_the_model_alone():
    """--compile's peer: FirstBlockCache on a copy of the transformer compiled with its hooks gives the images
    the eager peer gives on the transformer itself (dynamo's 'eager' backend runs the same ops), and skips
    calls (they differ from uncached); the copy shares the weights, and the transformer itself never carries
    a hook."""
    from ditcache.bench.running import CompiledPeer, generate
    from ditcache.peers import make_peer

    subject = load_subject("dit", SMALL["config"])
    seeds, steps = [0, 1], 6
    plain = generate(subject, seeds, steps)[0]
    peer = make_peer("fbcache", subject.transformer, {"threshold": 0.5}, steps)
    try:
        eager = generate(subject, seeds, steps, peer=peer)[0]
    finally:
        peer.remove()
    compiled = CompiledPeer(subject, "fbcache", {"threshold": 0.5}, steps, "eager")
    try:
        images = compiled.generate(seeds)
        assert compiled.copy is not subject.transformer
        mine, theirs = list(compiled.copy.parameters()), list(subject.transformer.parameters())
        assert len(mine) == len(theirs) > 0 and all(a is b for a, b in zip(mine, theirs))
        assert getattr(subject.transformer, "_ditcache_peer", None) is None
        assert not any(hasattr(m, "_diffusers_hook") for m in subject.transformer.modules())
    finally:
        compiled.remove()
    assert not torch.equal(eager, plain)  # the peer skipped some calls
    torch.testing.assert_close(images, eager, rtol=0, atol=1e-6)


def test_report_records_the_openmp_wait_policy(report):
    """Wall-clock depends on OpenMP's wait policy: the report keeps this process's and its header says it."""
    rep, out = report
    assert rep["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY")
    header = (out / "report.md").read_text().splitlines()[2]
    policy = os.environ.get("OMP_WAIT_POLICY")
    assert ("1 threads (OMP_WAIT_POLICY=" + policy + ")" if policy else "1 threads (OMP_WAIT_POLICY unset)") in header


def test_each_row_keeps_its_timed_rounds_and_its_median(report):
    """Every row keeps the seconds of each timed round (repeats=1 here: one), and its wall-clock is their
    median, so a lead can be decided round by round (BENCHMARKS.md's lead sections)."""
    rep, _ = report
    for r in rep["rows"]:
        rounds = r["extra"]["wall_rounds_s"]
        assert len(rounds) == SMALL["repeats"] and all(t > 0 for t in rounds)
        assert r["wall_s"] == statistics.median(rounds)
