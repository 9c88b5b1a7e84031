"""What a benchmark runs: its configuration, the settings swept per method, and quality budgets."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class BenchConfig:
    model: str = "dit"                 # a shipped default ('dit', 'flux', 'dit256', ...) or a diffusers model folder
    methods: str = "all"               # 'all', 'none', or a comma list of method names / settings as text
    peers: str = "all"                 # comma list of peer names, or 'all' / 'none'
    seeds: int = 500                   # images per setting (one seed each; labels cycle through the classes).
    #                                    500: the paired FD interval shrinks as 1/sqrt(N); BENCHMARKS.md,
    #                                    "Choosing the sample size", gives the measured half-width
    steps: int = 50                    # sampling steps
    batch: int = 16                    # images per model call batch
    repeats: int = 3                   # interleaved timing rounds (median reported)
    budget: str | None = None          # e.g. 'psnr>=30', 'fd<=1.05x', 'psnr>=30,fd<=1.05x' (all must hold)
    trace: bool = False                # save each ditcache run's per-call plans (trace_<setting>.json)
    replay: str | None = None          # a trace file: benchmark exactly that run instead of the sweeps
    config: str | None = None          # zoo architecture with random weights (speed at real sizes)
    speed_only: bool = False           # skip the quality columns
    bootstrap: int = 200               # bootstrap resamples for every interval (95%, percentile method)
    out: str = "bench-out"             # report folder
    threads: int | None = None         # torch threads (None: leave as set)
    compile: str | None = None         # also time each ditcache setting on torch.compile(transformer, backend=this)
    #                                    ('inductor': the real thing; 'eager': dynamo's tracing only, for tests);
    #                                    None: eager timing only


def sweeps(family: str) -> dict[str, list]:
    """Settings per method, from conservative to aggressive (each reaching past 4x FLOPs where the method
    can). Presets follow the model family. HiCache and FoCa are forecasters: their rows are TaylorSeer's
    schedule with that forecaster (and ClusCa with HiCache: the paper's "Hi-ClusCa")."""
    from ..forecast import FoCa, HiCache
    from ..methods import FORA, L2C, L2P, ClusCa, FreqCa, HyCa, MeanCache, SpeCa, TaylorSeer, ToCa, TokenCache

    toca = {"pixart": "pixart", "flux": "flux", "latte": "opensora"}.get(family, "dit")
    return {
        "fora": [FORA(interval=n) for n in (2, 3, 5)],
        "taylorseer": [TaylorSeer(interval=n, order=o) for n, o in ((3, 1), (4, 2), (6, 2))],
        "toca": [ToCa.preset(toca, interval=n, fresh_ratio=r) for n, r in ((3, 0.1), (5, 0.1))],
        "clusca": [ClusCa(interval=n, clusters=8) for n in (4, 6)],
        # shipped for the defaults; measured with `generate`: at 0.1 the dit router computes 90% of cache-step
        # branches, at 0.9 14%, at 0.97 none (flux: 83%, 33%, 2%)
        "l2c": [L2C(artifact=family, threshold=t) for t in (0.5, 0.7, 0.9, 0.97)],
        # the last two decide more whole sites from their cache (site_threshold 0.7) and space full steps wider;
        # on flux (25 seeds, BENCHMARKS.md) 2.27x and 3.13x FLOPs at 38.9 and 32.9 dB, where the first two
        # stop below 1.8x (full steps dense early, sparse late, is the better order there)
        "tokencache": [TokenCache(artifact=family, ratio=r, k1=k1) for r, k1 in ((0.2, 4), (0.1, 6))]
        + [TokenCache(artifact=family, ratio=0.1, k1=2, k2=6, site_threshold=0.7),
           TokenCache(artifact=family, ratio=0.1, k1=6, k2=4, boundary=0.6, site_threshold=0.7)],
        # the frontier (the paper defaults, then a more aggressive point)
        "hicache": [TaylorSeer(interval=n, order=2, warmup=3, forecast=HiCache(sigma=0.5)) for n in (4, 6, 7)],
        "foca": [TaylorSeer(interval=n, order=1, warmup=3, forecast=FoCa()) for n in (4, 6)],
        "hi-clusca": [ClusCa(interval=5, clusters=8, forecast=HiCache(sigma=0.5))],
        "hyca": [HyCa(artifact=family), HyCa(artifact=family, interval=7)],
        "freqca": [FreqCa(interval=n) for n in (6, 9)],
        "speca": [SpeCa(), SpeCa(threshold=0.4, max_drafts=10)],
        # issue 27's frontier: one feature for the whole model, full every 5th / 7th step after 3 (4.1x, 5.5x FLOPs)
        "l2p": [L2P(artifact=family, interval=n) for n in (5, 7)],
        "meancache": [MeanCache(interval=n) for n in (5, 7)],
    }


def method_settings(text: str, family: str, artifact: str | None = None) -> list[tuple[str, object]]:
    """``--methods``: 'all', 'none', or a comma list whose items are a sweep's name (all its settings) or
    one setting as text ('fora:interval=3,warmup=1': commas inside a setting stay with it). Returns
    (row name, method) pairs. artifact: the name learned methods load their shipped artifacts by."""
    from ..methods import parse_method
    from ..methods.artifacts import for_model

    table = sweeps(family)
    if artifact is not None:
        table = {k: [for_model(m, artifact) for m in v] for k, v in table.items()}
    if text in ("none", ""):
        return []
    if text == "all":
        return [(name, m) for name in table for m in table[name]]
    items: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if "=" in part and ":" not in part and items and ":" in items[-1]:
            items[-1] += "," + part  # another key=value of the setting before
        elif part:
            items.append(part)
    out = []
    for item in items:
        if ":" in item:
            m = parse_method(item)
            if artifact is not None:  # learned methods: this model's artifact, unless the text names one
                m = for_model(m, artifact, item)
            out.append((m.name, m))
        elif item in table:
            out += [(item, m) for m in table[item]]
        else:
            raise KeyError(f"unknown method {item!r} in --methods; known: {sorted(table)} "
                           "(or a setting such as 'fora:interval=3')")
    return out


def names(text: str) -> list[str]:
    """A comma list, 'all' (-> ['all']) or 'none' (-> [])."""
    if text in ("none", ""):
        return []
    return [t.strip() for t in text.split(",") if t.strip()]


# --------------------------------------------------------------------------- budgets

METRICS = ("psnr", "ssim", "fd", "accuracy", "featerr", "latent_err", "lpips", "clip_score")  # last 3: pipelines


def parse_budget(text: str) -> list[tuple[str, str, float, bool]]:
    """'psnr>=30' -> [('psnr', '>=', 30, False)]; 'fd<=1.05x' -> [('fd', '<=', 1.05, True: times uncached)];
    several joined by commas must all hold."""
    out = []
    for part in text.split(","):
        m = re.fullmatch(rf"\s*({'|'.join(METRICS)})\s*(>=|<=)\s*([0-9.]+)\s*(x?)\s*", part)
        if not m:
            raise ValueError(f"bad budget {part!r}: expected e.g. 'psnr>=30', 'ssim>=0.9', 'fd<=1.05x', "
                             f"'accuracy>=0.8', 'featerr<=0.1' (metrics {METRICS}), joined by commas")
        out.append((m.group(1), m.group(2), float(m.group(3)), bool(m.group(4))))
    return out
