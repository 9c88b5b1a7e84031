"""Running a benchmark: generations per setting (sharded over torchrun processes), interleaved timing."""

from __future__ import annotations

import copy
import functools
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .quality import Quality
from .report import Row, best_under_budget, wait_policy, write
from .settings import BenchConfig, method_settings, names
from .subjects import Subject, load_subject


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                     progress: bool = False) -> dict[str, list[float]]:
    """Wall-clock seconds of each function, run round-robin (A B C A B C ...) so drift hits all alike.

    A function that returns a float reports its own duration (to leave set-up out of the timing)."""
    bar = tqdm(total=(warmup + repeats) * len(fns), desc="timing (interleaved rounds)", disable=not progress)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            bar.update(1)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            own = fn()
            times[name].append(own if isinstance(own, float) else time.perf_counter() - start)
            bar.update(1)
    bar.close()
    return times


def guarded(fns: dict[str, Callable[[], object]]) -> tuple[dict[str, Callable[[], object]], dict[str, str]]:
    """``fns`` wrapped for ``time_interleaved`` so that one raising is recorded (``failed[key]``: its error) and
    not called again, while the other settings' rounds go on; a failed call reports 0.0 s, which the caller
    drops with the key."""
    failed: dict[str, str] = {}

    def wrap(key, fn):
        def call():
            if key in failed:
                return 0.0
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - any failure of one setting is that setting's result
                failed[key] = f"{type(e).__name__}: {e}"
                return 0.0
        return call

    return {key: wrap(key, fn) for key, fn in fns.items()}, failed


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| over the whole batch."""
    return float((out - ref).norm() / ref.norm().clamp_min(1e-12))


def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def generate(subject: Subject, seeds: list[int], steps: int, method=None, peer=None, trace: list | None = None,
             count_flops: bool = True):
    """Images for ``seeds`` (one batch) and the ditcache run's stats (None for peers and uncached).
    count_flops=False for timing: torch's FLOP counter slows the calls it counts."""
    from ..engine import cached
    from ..sampling import sample

    noise, cond, uncond = subject.inputs(seeds)
    if peer is not None:
        from ..peers import generate_with_peer

        lat = generate_with_peer(peer, subject.transformer, noise, cond, uncond, steps, subject.guidance)
        return subject.decode(lat), None
    if method is None:
        return subject.decode(sample(subject.transformer, noise, cond, uncond, steps=steps,
                                     guidance_scale=subject.guidance)), None
    with cached(subject.transformer, method, trace=trace is not None, count_flops=count_flops) as run:
        lat = sample(subject.transformer, noise, cond, uncond, steps=steps, guidance_scale=subject.guidance)
    if trace is not None:
        trace.extend(run.trace)
    return subject.decode(lat), run.stats



def peer_settings(peer_names: list[str]) -> list[tuple[str, object]]:
    """(peer name, setting) for each setting in the sweep of each named peer (["all"]: every peer); refused with
    the known names on a miss, and with the install line when the peers extra is missing."""
    if not peer_names:
        return []
    try:
        from ..peers import PEERS
    except ImportError as e:
        raise ImportError(f"peers need the extra: pip install 'ditcache[peers]' ({e})") from None
    out = []
    for name in (list(PEERS) if peer_names == ["all"] else peer_names):
        if name not in PEERS:
            raise KeyError(f"unknown peer {name!r}; known: {sorted(PEERS)}")
        out += [(name, s) for s in PEERS[name].sweep]
    return out

def _settings(cfg: BenchConfig, subject: Subject) -> list[tuple[str, str, object]]:
    """(kind, name, method or peer settings) for every setting the config asks for."""
    from ..methods import Replay

    if cfg.replay:
        return [("ditcache", "replay", Replay(trace=cfg.replay))]
    settings = [("ditcache", name, m) for name, m in method_settings(cfg.methods, subject.family, subject.artifact)]
    settings += [("peer", name, s) for name, s in peer_settings(names(cfg.peers))]
    return settings


def run_bench(cfg: BenchConfig, log=print) -> dict:
    """Run the benchmark; rank 0 writes the report and returns it as a dict (other ranks: {})."""
    from ..engine import flop_counter
    from ..methods import NoCache, describe

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, world = _dist()
    subject = load_subject(cfg.model, cfg.config)
    seeds = list(range(cfg.seeds))
    batches = [seeds[i:i + cfg.batch] for i in range(0, len(seeds), cfg.batch)]
    mine = batches[rank::world]
    settings = _settings(cfg, subject)
    out_dir = Path(cfg.out)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=(len(settings) + 1) * len(mine), desc=f"bench {subject.name}: generations", disable=rank != 0)

    def gather(images_by_batch: dict[int, torch.Tensor]) -> torch.Tensor | None:
        if world > 1:
            parts = [None] * world if rank == 0 else None
            torch.distributed.gather_object(images_by_batch, parts, dst=0)
            if rank != 0:
                return None
            images_by_batch = {k: v for p in parts for k, v in p.items()}
        return torch.cat([images_by_batch[i] for i in sorted(images_by_batch)])

    # uncached reference: images and counted FLOPs (the NoCache method computes everything)
    ref_parts, ref_flops = {}, 0
    for b in mine:
        images, stats = generate(subject, b, cfg.steps, method=NoCache())
        ref_parts[batches.index(b)] = images
        ref_flops += stats.flops
        bar.update(1)
    ref = gather(ref_parts)

    n_mine = max(1, sum(len(b) for b in mine))
    rows: list[Row] = [Row("reference", "none", "uncached", gflops_per_image=ref_flops / 1e9 / n_mine)]
    runnable: dict[int, Callable] = {}
    images_of: dict[int, torch.Tensor] = {}
    for i, (kind, name, thing) in enumerate(settings):
        setting = describe(thing) if kind == "ditcache" else json.dumps(thing, sort_keys=True)
        row = Row(kind, name, setting)
        rows.append(row)
        try:
            parts, flops, plan_flops, cache, plan_s, wall_s = {}, 0, 0, 0, 0.0, 0.0
            trace: list | None = [] if cfg.trace and kind == "ditcache" else None
            peer = None
            if kind == "peer":
                from ..peers import make_peer

                peer = make_peer(name, subject.transformer, thing, cfg.steps)
            try:
                for b in mine:
                    if peer is not None:  # peers report no FLOPs: count what ran
                        noise, cond, uncond = subject.inputs(b)
                        peer.prepare(noise, cond, uncond, subject.guidance)  # MagCache calibrates: not counted
                        with flop_counter() as counter:
                            images, _ = generate(subject, b, cfg.steps, peer=peer)
                        flops += counter.get_total_flops()
                    else:
                        method = replace(thing, start=batches.index(b)) if name == "replay" else thing
                        images, stats = generate(subject, b, cfg.steps, method=method, trace=trace)
                        flops += stats.flops  # planning included
                        plan_flops += stats.plan_flops
                        cache = max(cache, stats.peak_cache_bytes)
                        plan_s += sum(r.plan_s for r in stats.records)
                        wall_s += stats.wall_s
                    parts[batches.index(b)] = images
                    bar.update(1)
                if peer is not None:
                    row.extra = peer.summary()
            finally:
                if peer is not None:
                    peer.remove()  # a peer stays on the model only while its own setting runs
            row.gflops_per_image = flops / 1e9 / n_mine
            row.flop_speedup = ref_flops / max(flops, 1)
            if kind != "peer":
                row.plan_gflops_per_image = plan_flops / 1e9 / n_mine
                row.cache_mib = cache / 2**20
                row.extra["planning_share"] = plan_s / max(wall_s, 1e-9)  # host-side planning (k-means, scores)
            if trace is not None and rank == 0:
                (out_dir / f"trace_{i:02d}_{name}.json").write_text(
                    json.dumps({"setting": setting, "generations": trace}))
            imgs = gather(parts)
            if rank == 0:
                images_of[i] = imgs
            runnable[i] = _timer(subject, mine[0] if mine else batches[0], cfg.steps, kind, name, thing)
        except Exception as e:  # a setting that cannot run is reported, and the sweep goes on
            row.error = f"{type(e).__name__}: {e}"
    bar.close()

    # timing: one batch per setting, all settings round-robin
    fns = {"ref": _timer(subject, mine[0] if mine else batches[0], cfg.steps, "reference", "none", None)}
    fns.update({str(i): fn for i, fn in runnable.items()})
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    times = time_interleaved(fns, repeats=cfg.repeats, progress=rank == 0)
    t_ref = median(times["ref"])
    rows[0].wall_s, rows[0].wall_speedup, rows[0].flop_speedup = t_ref, 1.0, 1.0
    rows[0].extra["wall_rounds_s"] = times["ref"]  # each timed round's seconds, in round order
    for i in runnable:
        row = rows[i + 1]
        row.wall_s = median(times[str(i)])
        row.wall_speedup = t_ref / row.wall_s
        row.extra["wall_rounds_s"] = times[str(i)]  # round r of every row ran in the same pass: pairable
    if cfg.compile:
        _time_compiled(cfg, subject, mine[0] if mine else batches[0], settings, runnable, rows, rank == 0)
    if rank != 0:
        return {}

    if not cfg.speed_only:
        log(f"quality: {len(images_of)} settings x {ref.shape[0]} images, {cfg.bootstrap} bootstrap resamples")
        quality = Quality(ref, subject.labels(seeds) if subject.labels else None, cfg.bootstrap)
        for k, v in quality.reference_row().items():
            setattr(rows[0], k, v)
        for i, images in tqdm(images_of.items(), desc="quality", leave=False):
            for k, v in quality.score(images).items():
                setattr(rows[i + 1], k, v)
    report = _report(cfg, subject, rows, world)
    write(out_dir, report, rows, subject, ref, images_of, cfg.steps)
    log(f"wrote {out_dir}/report.md, report.json, pareto.png and grids")
    return report


def _timer(subject: Subject, seeds: list[int], steps: int, kind: str, name: str, thing) -> Callable:
    """A function timing one batch of this setting; peers are applied and removed around it, untimed."""
    if kind == "peer":
        def run_peer() -> float:
            from ..peers import make_peer

            peer = make_peer(name, subject.transformer, thing, steps)
            try:
                return _time_peer(subject, peer, seeds, steps)
            finally:
                peer.remove()
        return run_peer
    return lambda: generate(subject, seeds, steps, method=thing, count_flops=False)


def _time_peer(subject: Subject, peer, seeds: list[int], steps: int) -> float:
    """Seconds of one generation with an applied ``peer``; its one-off preparation (MagCache's calibration)
    runs first, untimed."""
    noise, cond, uncond = subject.inputs(seeds)
    peer.prepare(noise, cond, uncond, subject.guidance)
    start = time.perf_counter()
    generate(subject, seeds, steps, peer=peer)
    return time.perf_counter() - start


def _time_compiled(cfg: BenchConfig, subject: Subject, seeds: list[int], settings: list, runnable: dict,
                   rows: list[Row], progress: bool) -> None:
    """--compile: the uncached model, each ditcache setting and each peer setting that ran, timed round-robin
    compiled; the warm-up round pays the compilation. ditcache runs on ``torch.compile(transformer)`` (each
    wrapped forward is compiled on its own, ``engine.install``). A peer runs on its own copy of the transformer
    (the weights shared, not copied), applied once and compiled whole with its diffusers or cache-dit hooks
    inside, so rounds neither re-apply it nor make dynamo recompile; the copies are removed afterwards."""
    import torch._dynamo.utils as dynamo_utils

    compiled = replace(subject, transformer=torch.compile(subject.transformer, backend=cfg.compile))
    fns = {"ref": _timer(compiled, seeds, cfg.steps, "reference", "none", None)}
    peers = []
    try:
        for i in runnable:
            kind, name, thing = settings[i]
            if kind == "ditcache":
                fns[str(i)] = _timer(compiled, seeds, cfg.steps, kind, name, thing)
            else:
                peers.append(CompiledPeer(subject, name, thing, cfg.steps, cfg.compile))
                fns[str(i)] = functools.partial(peers[-1].time, seeds)
        built: dict[str, list[int]] = {key: [] for key in fns}  # graphs dynamo built during each call

        def counted(key, fn):
            def call():
                before = dynamo_utils.counters["stats"]["unique_graphs"]
                out = fn()
                built[key].append(dynamo_utils.counters["stats"]["unique_graphs"] - before)
                return out
            return call

        safe, failed = guarded({key: counted(key, fn) for key, fn in fns.items()})
        times = time_interleaved(safe, repeats=cfg.repeats, progress=progress)
    finally:
        for peer in peers:
            peer.remove()
    for key, error in failed.items():  # a setting that cannot run compiled keeps its eager columns
        rows[0 if key == "ref" else int(key) + 1].extra["compiled_error"] = error
    if "ref" in failed:
        return  # no compiled uncached model to compare with
    t_ref = median(times["ref"])
    for key, ts in times.items():
        if key in failed:
            continue
        row = rows[0 if key == "ref" else int(key) + 1]
        row.compiled_wall_s = median(ts)
        row.compiled_wall_speedup = t_ref / row.compiled_wall_s
        row.extra["compiled_graphs_after_warmup"] = sum(built[key][1:])  # 0: the timed rounds compiled nothing


class CompiledPeer:
    """A peer applied to a copy of ``subject.transformer`` that shares its parameters and buffers (the modules
    are new, so the peer's hooks and state stay off the original), then ``torch.compile``'d whole with the
    hooks inside. ``generate`` gives its images, ``time`` one timed generation (the peer's one-off preparation,
    MagCache's calibration, untimed), ``remove`` takes the peer off the copy."""

    def __init__(self, subject: Subject, name: str, settings: dict, steps: int, backend: str) -> None:
        from ..peers import make_peer

        shared = {id(t): t for t in (*subject.transformer.parameters(), *subject.transformer.buffers())}
        self.copy = copy.deepcopy(subject.transformer, memo=shared)
        self.peer = make_peer(name, self.copy, settings, steps)
        self.subject = replace(subject, transformer=torch.compile(self.copy, backend=backend))
        self.steps = steps

    def generate(self, seeds: list[int]) -> torch.Tensor:
        return generate(self.subject, seeds, self.steps, peer=self.peer)[0]

    def time(self, seeds: list[int]) -> float:
        return _time_peer(self.subject, self.peer, seeds, self.steps)

    def remove(self) -> None:
        self.peer.remove()


def _versions() -> dict[str, str]:
    import diffusers

    from .. import __version__

    v = {"ditcache": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__}
    try:
        from ..peers import peer_versions

        v.update(peer_versions())
    except ImportError:
        v["peers"] = "not installed (pip install 'ditcache[peers]')"
    return v


def _report(cfg: BenchConfig, subject: Subject, rows: list[Row], world: int) -> dict:
    report = {
        "config": asdict(cfg), "model": subject.name, "transformer": type(subject.transformer).__name__,
        "processes": world, "threads": torch.get_num_threads(), "omp_wait_policy": wait_policy(),
        "flops_include_planning": True,  # FLOP x counts planning (scores, k-means, verification)
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "versions": _versions(), "rows": [asdict(r) for r in rows],
    }
    if cfg.budget:
        report["budget"] = {"budget": cfg.budget,
                            "best": {k: asdict(r) for k, r in best_under_budget(rows, cfg.budget).items()}}
    return report
