"""Benchmarks: every method and every peer on one model, same seeds and sampler, one report.

``run_bench(BenchConfig(...))`` generates the uncached reference and each setting of each method and
peer for the same seeds; measures wall-clock (interleaved round-robin, medians, ratios to uncached),
FLOPs (torch's counter), cache bytes and quality (FD in classifier space and class accuracy for the
shipped Fashion-MNIST defaults; PSNR and SSIM against the uncached output for every model), and writes
``report.md``, ``report.json``, ``pareto.png`` and one image grid per method. Under ``torchrun`` the
seeds are sharded over processes (whole batches, so every image is computed exactly as in one
process) and gathered on rank 0, which writes the report.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

# --------------------------------------------------------------------------- small measuring helpers


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


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| over the whole batch."""
    return float((out - ref).norm() / ref.norm().clamp_min(1e-12))


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- what is benchmarked


@dataclass
class Subject:
    """A transformer and how to build its inputs for a list of seeds (one image per seed)."""

    name: str
    family: str                  # "dit" | "flux" | ... : picks method presets
    transformer: nn.Module
    inputs: Callable             # seeds -> (noise, cond, uncond)
    decode: Callable             # latents -> images (B, 1, 28, 28) in [-1, 1], or the latents themselves
    guidance: float
    labels: Callable | None = None  # seeds -> requested classes (shipped defaults only)


def _family(transformer: nn.Module) -> str:
    return {"DiTTransformer2DModel": "dit", "PixArtTransformer2DModel": "pixart", "FluxTransformer2DModel": "flux",
            "SD3Transformer2DModel": "sd3", "WanTransformer3DModel": "wan"}.get(type(transformer).__name__, "dit")


def load_subject(model: str, config: str | None = None) -> Subject:
    """'dit' | 'flux' (shipped defaults), a local diffusers model folder, or a zoo config (random weights)."""
    from . import zoo

    if config is not None:
        transformer = zoo.build(config)
        entry = zoo.CONFIGS[config]
        return Subject(config, _family(transformer), transformer,
                       lambda seeds: _stack_inputs(seeds, lambda s: zoo.conditioning_for(
                           entry.cls.__name__, entry.kwargs, 1, s, latent=entry.latent)),
                       lambda x: x, guidance=4.0)
    if model in ("dit", "flux"):
        from .models import load_default

        m = load_default(model)

        def inputs(seeds):
            labels = torch.tensor([s % 10 for s in seeds])
            cond, uncond = m.conditioning(labels)
            noise = torch.cat([m.initial_noise(1, s) for s in seeds])
            return noise, cond, uncond

        return Subject(model, model, m.transformer, inputs, m.decode, m.default_guidance_scale,
                       labels=lambda seeds: torch.tensor([s % 10 for s in seeds]))
    path = Path(model)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{model!r} is neither 'dit', 'flux' nor a diffusers model folder with config.json")
    import diffusers

    cls_name = json.loads((path / "config.json").read_text()).get("_class_name")
    cls = getattr(diffusers, cls_name or "", None)
    if cls is None:
        raise ValueError(f"{path}/config.json names class {cls_name!r}, which diffusers does not have")
    transformer = cls.from_pretrained(str(path)).eval().float()
    return Subject(path.name, _family(transformer), transformer,
                   lambda seeds: _stack_inputs(seeds, lambda s: zoo.conditioning_for(
                       cls_name, transformer.config, 1, s)), lambda x: x, guidance=4.0)


def _stack_inputs(seeds, one) -> tuple:
    parts = [one(s) for s in seeds]
    noise = torch.cat([p[0] for p in parts])
    cond, uncond = ({k: (torch.cat([p[i][k] for p in parts]) if k not in ("img_ids", "txt_ids") else parts[0][i][k])
                     for k in parts[0][i]} for i in (1, 2))
    return noise, cond, uncond


# --------------------------------------------------------------------------- what settings are swept


def _sweeps(family: str) -> dict[str, list]:
    """Settings per method, from conservative to aggressive. Presets follow the model family."""
    from .methods import FORA, L2C, ClusCa, TaylorSeer, ToCa, TokenCache

    toca = {"pixart": "pixart", "flux": "flux"}.get(family, "dit")
    return {
        "fora": [FORA(interval=n) for n in (2, 3, 4, 5)],
        "taylorseer": [TaylorSeer(interval=n, order=o) for n, o in ((3, 1), (4, 1), (4, 2), (5, 1), (6, 2))],
        "toca": [ToCa.preset(toca, interval=n, fresh_ratio=r) for n, r in ((3, 0.1), (4, 0.1), (5, 0.1), (6, 0.15))]
        + [ToCa.preset(toca, interval=4, fresh_ratio=0.1, score="key_norm")],  # the attention-map-free score
        "clusca": [ClusCa(interval=n, clusters=k) for n, k in ((4, 8), (5, 8), (6, 8), (7, 8))],
        "l2c": [L2C(artifact=family, threshold=t) for t in (0.1, 0.5, 0.7, 0.9)],  # shipped for the defaults
        "tokencache": [TokenCache(artifact=family, ratio=r, k1=k1) for r, k1 in ((0.3, 4), (0.3, 6), (0.15, 6))],
    }


@dataclass
class BenchConfig:
    model: str = "dit"                 # 'dit' | 'flux' | a local diffusers model folder
    methods: str = "all"               # comma list of method names, or 'all' / 'none'
    peers: str = "all"                 # comma list of peer names, or 'all' / 'none'
    seeds: int = 64                    # images per setting (one seed each; labels cycle through the classes)
    steps: int = 50                    # sampling steps
    batch: int = 16                    # images per model call batch
    repeats: int = 3                   # interleaved timing rounds (median reported)
    budget: str | None = None          # e.g. 'psnr>=30', 'fd<=1.05x' (relative to uncached)
    trace: bool = False                # save each ditcache run's per-call plans (trace_<setting>.json)
    replay: str | None = None          # a trace file: benchmark exactly that run instead of the sweeps
    config: str | None = None          # zoo architecture with random weights (speed at real sizes)
    speed_only: bool = False           # skip the quality columns
    out: str = "bench-out"             # report folder
    threads: int | None = None         # torch threads (None: leave as set)


@dataclass
class Row:
    kind: str                          # "reference" | "ditcache" | "peer"
    method: str                        # method or peer name
    setting: str                       # its settings as text
    gflops_per_image: float | None = None
    flop_speedup: float | None = None
    wall_s: float | None = None        # median wall-clock of one batch
    wall_speedup: float | None = None
    cache_mib: float | None = None     # peak bytes held by ditcache's store (peers: not reported)
    peak_gpu_mib: float | None = None  # CUDA only
    psnr: float | None = None          # mean over images, vs uncached on the same seeds
    ssim: float | None = None
    fd: float | None = None            # FD in classifier space vs the 10k Fashion-MNIST test images
    accuracy: float | None = None      # share of images classified as the requested class
    error: str | None = None           # why this setting could not run
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- the run


def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def _generate(subject: Subject, seeds: list[int], steps: int, method=None, peer=None, trace: list | None = None):
    """Images for ``seeds`` (in batches) and the ditcache runs' stats."""
    from .engine import cached
    from .sampling import sample

    noise, cond, uncond = subject.inputs(seeds)
    if peer is not None:
        from .peers import generate_with_peer

        lat = generate_with_peer(peer, subject.transformer, noise, cond, uncond, steps, subject.guidance)
        return subject.decode(lat), None
    if method is None:
        return subject.decode(sample(subject.transformer, noise, cond, uncond, steps=steps,
                                     guidance_scale=subject.guidance)), None
    with cached(subject.transformer, method, trace=trace is not None) as run:
        lat = sample(subject.transformer, noise, cond, uncond, steps=steps, guidance_scale=subject.guidance)
    if trace is not None:
        trace.extend(run.trace)
    return subject.decode(lat), run.stats


def run_bench(cfg: BenchConfig, log=print) -> dict:
    """Run the benchmark; rank 0 writes the report and returns it as a dict (other ranks: {})."""
    from .engine import flop_counter
    from .methods import Replay, describe

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, world = _dist()
    subject = load_subject(cfg.model, cfg.config)
    quality = not cfg.speed_only
    seeds = list(range(cfg.seeds))
    batches = [seeds[i:i + cfg.batch] for i in range(0, len(seeds), cfg.batch)]
    mine = batches[rank::world]

    settings: list[tuple[str, str, object]] = []  # (kind, name, method-or-peer-settings)
    if cfg.replay:
        settings.append(("ditcache", "replay", Replay(trace=cfg.replay)))
    else:
        settings += [("ditcache", m.name, m) for m in method_settings(cfg.methods, subject.family)]
        peer_names = _names(cfg.peers, None)
        if peer_names:
            try:
                from .peers import PEERS
            except ImportError as e:
                raise ImportError(f"peers need the extra: pip install 'ditcache[peers]' ({e})") from None
            for name in (list(PEERS) if peer_names == ["all"] else peer_names):
                if name not in PEERS:
                    raise KeyError(f"unknown peer {name!r}; known: {sorted(PEERS)}")
                settings += [("peer", name, s) for s in PEERS[name].sweep]

    out_dir = Path(cfg.out)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(settings) + 1, desc=f"bench {subject.name}", disable=rank != 0)

    def gather(images_by_batch: dict[int, torch.Tensor]) -> torch.Tensor | None:
        if world > 1:
            parts = [None] * world if rank == 0 else None
            torch.distributed.gather_object(images_by_batch, parts, dst=0)
            if rank != 0:
                return None
            images_by_batch = {k: v for p in parts for k, v in p.items()}
        return torch.cat([images_by_batch[i] for i in sorted(images_by_batch)])

    # uncached reference: images and counted FLOPs (the NoCache method computes everything)
    from .methods import NoCache

    ref_parts, ref_flops = {}, 0
    for b in mine:
        images, stats = _generate(subject, b, cfg.steps, method=NoCache())
        ref_parts[batches.index(b)] = images
        ref_flops += stats.flops
    ref = gather(ref_parts)
    bar.update(1)

    rows: list[Row] = [Row("reference", "none", "uncached", gflops_per_image=ref_flops / 1e9 / _count(mine))]
    runnable: dict[int, Callable] = {}
    images_of: dict[int, torch.Tensor] = {}
    for i, (kind, name, thing) in enumerate(settings):
        setting = describe(thing) if kind == "ditcache" else json.dumps(thing, sort_keys=True)
        row = Row(kind, name, setting)
        rows.append(row)
        try:
            parts, flops, cache, plan_s, wall_s = {}, 0, 0, 0.0, 0.0
            trace: list | None = [] if cfg.trace and kind == "ditcache" else None
            peer = None
            if kind == "peer":
                from .peers import make_peer

                peer = make_peer(name, subject.transformer, thing, cfg.steps)
            try:
                for b in mine:
                    if peer is not None:  # peers report no FLOPs: count what ran
                        with flop_counter() as counter:
                            images, _ = _generate(subject, b, cfg.steps, peer=peer)
                        flops += counter.get_total_flops()
                    else:
                        method = replace(thing, start=batches.index(b)) if name == "replay" else thing
                        images, stats = _generate(subject, b, cfg.steps, method=method, trace=trace)
                        flops += stats.flops
                        cache = max(cache, stats.peak_cache_bytes)
                        plan_s += sum(r.plan_s for r in stats.records)
                        wall_s += stats.wall_s
                    parts[batches.index(b)] = images
                if peer is not None:
                    row.extra = peer.summary()
            finally:
                if peer is not None:
                    peer.remove()  # a peer stays on the model only while its own setting runs
            row.gflops_per_image = flops / 1e9 / _count(mine)
            row.flop_speedup = ref_flops / max(flops, 1)
            if kind != "peer":
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
        bar.update(1)
    bar.close()

    # timing: one batch per setting, all settings round-robin
    fns = {"ref": _timer(subject, mine[0] if mine else batches[0], cfg.steps, "reference", "none", None)}
    fns.update({str(i): fn for i, fn in runnable.items()})
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    times = time_interleaved(fns, repeats=cfg.repeats, progress=rank == 0)
    t_ref = median(times["ref"])
    rows[0].wall_s, rows[0].wall_speedup, rows[0].flop_speedup = t_ref, 1.0, 1.0
    for i in runnable:
        row = rows[i + 1]
        row.wall_s = median(times[str(i)])
        row.wall_speedup = t_ref / row.wall_s
    if rank != 0:
        return {}

    # quality on rank 0
    if quality:
        _quality(subject, rows, ref, images_of, seeds)
    report = _report(cfg, subject, rows, world)
    _write(out_dir, report, rows, subject, ref, images_of, settings, cfg)
    log(f"wrote {out_dir}/report.md, report.json, pareto.png and grids")
    return report


def method_settings(text: str, family: str) -> list:
    """``--methods``: 'all', 'none', or a comma list whose items are a method name (its whole sweep) or
    one setting as text ('fora:interval=3,warmup=1': commas inside a setting stay with it)."""
    from .methods import parse_method

    sweeps = _sweeps(family)
    if text in ("none", ""):
        return []
    if text == "all":
        return [m for name in sweeps for m in sweeps[name]]
    items: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if "=" in part and ":" not in part and items and ":" in items[-1]:
            items[-1] += "," + part  # another key=value of the setting before
        elif part:
            items.append(part)
    out = []
    for item in items:
        if ":" in item:
            out.append(parse_method(item))
        elif item in sweeps:
            out += sweeps[item]
        else:
            raise KeyError(f"unknown method {item!r} in --methods; known: {sorted(sweeps)} "
                           "(or a setting such as 'fora:interval=3')")
    return out


def _names(text: str, default: list[str] | None) -> list[str]:
    if text in ("none", ""):
        return []
    if text == "all":
        return default if default is not None else ["all"]
    return [t.strip() for t in text.split(",") if t.strip()]


def _count(batches: list[list[int]]) -> int:
    return max(1, sum(len(b) for b in batches))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def _timer(subject: Subject, seeds: list[int], steps: int, kind: str, name: str, thing) -> Callable:
    """A function timing one batch of this setting; peers are applied and removed around it, untimed."""
    if kind == "peer":
        def run_peer() -> float:
            from .peers import make_peer

            peer = make_peer(name, subject.transformer, thing, steps)
            try:
                noise, cond, uncond = subject.inputs(seeds)
                peer.prepare(noise, cond, uncond, subject.guidance)  # MagCache calibrates here: not timed
                start = time.perf_counter()
                _generate(subject, seeds, steps, peer=peer)
                return time.perf_counter() - start
            finally:
                peer.remove()
        return run_peer
    return lambda: _generate(subject, seeds, steps, method=thing)


def _quality(subject: Subject, rows: list[Row], ref: torch.Tensor, images_of: dict, seeds: list[int]) -> None:
    from . import metrics

    classifier = None
    if subject.labels is not None:
        from .evaluator import load_classifier

        classifier = load_classifier()
        mu, cov = classifier.reference_stats("test")
        labels = subject.labels(seeds)

    def score(row: Row, images: torch.Tensor, reference: bool = False) -> None:
        if reference:  # PSNR/SSIM of the uncached images against themselves mean nothing: left empty ("-")
            pass
        elif images.dim() == 4 and images.shape[1] == 1:  # per image; identical images count as 99 dB
            row.psnr = statistics.fmean(min(metrics.psnr(a[None], b[None]), 99.0) for a, b in zip(images, ref))
            row.ssim = statistics.fmean(metrics.ssim(a[None], b[None]) for a, b in zip(images, ref))
        else:  # latents of a random-weight or local model: PSNR over their own range
            rng = float(ref.max() - ref.min())
            row.psnr = statistics.fmean(min(metrics.psnr(a, b, data_range=rng), 99.0) for a, b in zip(images, ref))
        if classifier is not None:
            feats = classifier.features(images)
            m, c = metrics.mean_cov(feats)
            row.fd = metrics.frechet_distance_from_stats(m, c, mu, cov)
            row.accuracy = metrics.class_accuracy(classifier.logits(images), labels)

    score(rows[0], ref, reference=True)
    for i, images in images_of.items():
        score(rows[i + 1], images)


# --------------------------------------------------------------------------- budget search


def parse_budget(text: str) -> tuple[str, str, float, bool]:
    """'psnr>=30' -> ('psnr', '>=', 30, False); 'fd<=1.05x' -> ('fd', '<=', 1.05, True: times uncached)."""
    m = re.fullmatch(r"\s*(psnr|ssim|fd|accuracy)\s*(>=|<=)\s*([0-9.]+)\s*(x?)\s*", text)
    if not m:
        raise ValueError(f"bad budget {text!r}: expected e.g. 'psnr>=30', 'ssim>=0.9', 'fd<=1.05x', 'accuracy>=0.8'")
    return m.group(1), m.group(2), float(m.group(3)), bool(m.group(4))


def best_under_budget(rows: list[Row], budget: str) -> dict[str, Row]:
    """Per method and peer, the fastest setting (wall-clock) that meets the quality budget."""
    metric, op, value, relative = parse_budget(budget)
    if not any(getattr(r, metric) is not None for r in rows):
        raise ValueError(f"budget on {metric!r}, but this benchmark did not measure it")
    ref = getattr(rows[0], metric)
    if relative and ref is None:
        raise ValueError(f"budget {budget!r} is relative to uncached, which has no {metric} (use an absolute value)")
    limit = value * ref if relative else value
    best: dict[str, Row] = {}
    for row in rows[1:]:
        q = getattr(row, metric)
        if row.error or q is None or row.wall_speedup is None:
            continue
        if (q >= limit) if op == ">=" else (q <= limit):
            key = f"{row.kind}:{row.method}"
            if key not in best or row.wall_speedup > best[key].wall_speedup:
                best[key] = row
    return best


# --------------------------------------------------------------------------- reports


def _versions() -> dict[str, str]:
    import diffusers

    from . import __version__

    v = {"ditcache": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__}
    try:
        from .peers import peer_versions

        v.update(peer_versions())
    except ImportError:
        v["peers"] = "not installed (pip install 'ditcache[peers]')"
    return v


def _report(cfg: BenchConfig, subject: Subject, rows: list[Row], world: int) -> dict:
    report = {
        "config": asdict(cfg), "model": subject.name, "transformer": type(subject.transformer).__name__,
        "processes": world, "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "versions": _versions(), "rows": [asdict(r) for r in rows],
    }
    if cfg.budget:
        report["budget"] = {"budget": cfg.budget,
                            "best": {k: asdict(r) for k, r in best_under_budget(rows, cfg.budget).items()}}
    return report


def _fmt(x, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def report_markdown(report: dict) -> str:
    rows = [Row(**r) for r in report["rows"]]
    header = ["kind", "method", "setting", "GFLOPs/img", "FLOP x", "wall s/batch", "wall x", "cache MiB",
              "plan %", "PSNR dB", "SSIM", "FD", "accuracy"]
    table = [[r.kind, r.method, f"`{r.setting}`", _fmt(r.gflops_per_image, ".2f"), _fmt(r.flop_speedup, ".2f"),
              _fmt(r.wall_s, ".3f"), _fmt(r.wall_speedup, ".2f"), _fmt(r.cache_mib, ".1f"),
              _fmt(r.extra.get("planning_share"), ".1%"), _fmt(r.psnr, ".2f"),
              _fmt(r.ssim, ".4f"), _fmt(r.fd, ".3f"), _fmt(r.accuracy, ".3f")] for r in rows if not r.error]
    cfg = report["config"]
    lines = [f"# ditcache bench: {report['model']} ({report['transformer']})", "",
             f"{cfg['seeds']} seeds, {cfg['steps']} steps, batch {cfg['batch']}, {report['processes']} process(es), "
             f"{report['threads']} threads, device {report['device']}; wall-clock = median of {cfg['repeats']} "
             "interleaved runs of one batch; plan % = share of the generation spent planning on the host "
             "(scores, k-means). Versions: "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".", "",
             markdown_table(header, table)]
    failed = [r for r in rows if r.error]
    if failed:
        lines += ["", "## Settings that could not run", ""]
        lines += [f"- {r.kind} {r.method} `{r.setting}`: {r.error}" for r in failed]
    if "budget" in report:
        lines += ["", f"## Fastest setting per method under the budget `{report['budget']['budget']}`", ""]
        best = report["budget"]["best"]
        if not best:
            lines.append("No setting met the budget.")
        lines += [f"- {k}: `{r['setting']}` at {r['wall_speedup']:.2f}x wall-clock" for k, r in
                  sorted(best.items(), key=lambda kv: -kv[1]["wall_speedup"])]
    return "\n".join(lines) + "\n"


def _write(out_dir: Path, report: dict, rows: list[Row], subject: Subject, ref, images_of, settings, cfg) -> None:
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "report.md").write_text(report_markdown(report))
    pareto_plot(rows, out_dir / "pareto.png", title=f"{subject.name}: {cfg.steps} steps")
    if ref.dim() == 4 and ref.shape[1] == 1:
        from .viz import labelled_grid

        by_method: dict[str, list[tuple[str, torch.Tensor]]] = {}
        for i, images in images_of.items():
            row = rows[i + 1]
            by_method.setdefault(f"{row.kind}_{row.method}", []).append((row.setting[:18], images[:10]))
        from .data import CLASSES

        captions = [CLASSES[s % 10] for s in range(10)]
        for key, grid_rows in by_method.items():
            labelled_grid([("uncached", ref[:10])] + grid_rows, captions).save(out_dir / f"grid_{_slug(key)}.png")


def pareto_plot(rows: list[Row], path: Path, title: str = "") -> None:
    """Wall-clock speedup vs FD (if measured) and vs PSNR, one curve per method and peer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics_ = [m for m in ("fd", "psnr") if any(getattr(r, m) is not None for r in rows[1:])]
    if not metrics_:
        return
    fig, axes = plt.subplots(1, len(metrics_), figsize=(6.5 * len(metrics_), 4.5), squeeze=False)
    groups: dict[str, list[Row]] = {}
    for r in rows[1:]:
        if not r.error and r.wall_speedup is not None:
            groups.setdefault(f"{r.method}" + (" (peer)" if r.kind == "peer" else ""), []).append(r)
    for ax, metric in zip(axes[0], metrics_):
        for label, rs in sorted(groups.items()):
            pts = sorted((r.wall_speedup, getattr(r, metric)) for r in rs if getattr(r, metric) is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o" if "(peer)" not in label else "s",
                        linestyle="-" if "(peer)" not in label else "--", label=label)
        ref = getattr(rows[0], metric)
        if ref is not None:
            ax.axhline(ref, color="grey", linewidth=0.8, linestyle=":")
            ax.plot([1.0], [ref], "k*", markersize=10, label="uncached")
        ax.set_xlabel("wall-clock speedup vs uncached")
        ax.set_ylabel({"fd": "FD in classifier space (lower is better)", "psnr": "PSNR vs uncached, dB"}[metric])
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
