"""Do the token-level methods keep their FLOP savings in wall-clock? (issue 11)

    python benchmarks/token_paths.py [--models dit256 flux256] [--threads 1] [--only now 5 16]
        [--wait-policy=passive|default] [--allocator=default|tuned]

On the 256-token defaults, at batch 16 (50 steps) and batch 100 (10 steps, to bound the time), every
method and its uncached reference are timed round-robin in one process (median of --repeats rounds after
one warm-up round). For each: FLOP speedup (torch's counter), wall-clock speedup, the share of the FLOP
speedup kept in wall-clock (wall x / FLOP x), and the planning share (host-side time in the methods'
plans: scores, k-means, token choice, over the generation's wall-clock). ClusCa and ToCa appear twice:
with the planning they had before (L1 k-means up to 100 iterations; attention scores from every query
row, keys projected again) and now (L2 k-means through matrix products, at most 10 warm-started
iterations, each sample stopping once settled; scores from 64 query rows and the keys the full step
computed; the anchor edited first and the forecast built once on it: with propagation three full-size
passes, the means gathered, mixed in and the forecast's term added); ClusCa also with k-means
capped at 5 iterations, ToCa also with 64 query rows but keys projected again. TaylorSeer is the yardstick: the same
schedule and order without token work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from process_settings import (
    add_allocator,
    add_wait_policy,
    apply_allocator,
    apply_wait_policy,
    check_allocator,
    check_wait_policy,
)

_POLICY = apply_wait_policy()  # before torch loads: OpenMP reads it once
_ALLOCATOR = apply_allocator()  # before the first large allocation
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import ditcache  # noqa: E402
from ditcache.bench import markdown_table  # noqa: E402


def methods(family: str) -> dict:
    toca = "flux" if family == "flux" else "dit"
    return {
        "taylorseer N5 O1": ditcache.TaylorSeer(interval=5, order=1, warmup=3),
        "clusca before (L1, 100 it)": ditcache.ClusCa(interval=5, clusters=16, distance="l1", max_iters=100),
        "clusca now (L2, 10 it)": ditcache.ClusCa(interval=5, clusters=16),
        # a lower cap: on dit256 (10 images) PSNR vs uncached 34.33 dB at 10 iterations, 34.27 at 5, 34.17 at 3
        "clusca (L2, 5 it)": ditcache.ClusCa(interval=5, clusters=16, max_iters=5),
        "toca before (all queries)": ditcache.ToCa.preset(toca, interval=4, fresh_ratio=0.1, score_queries=None,
                                                           reuse_keys=False),
        "toca 64 queries, keys projected": ditcache.ToCa.preset(toca, interval=4, fresh_ratio=0.1, reuse_keys=False),
        "toca now (64 queries, kept keys)": ditcache.ToCa.preset(toca, interval=4, fresh_ratio=0.1),
        # fewer sampled rows: PSNR vs uncached (ToCa's defaults, 20 images, 50 steps) dit256 31.56 / 31.64 /
        # 32.06 dB and flux256 35.12 / 35.10 / 35.09 dB at 64 / 32 / 16 rows (each +- 0.8-1.3 standard error)
        "toca 16 queries, kept keys": ditcache.ToCa.preset(toca, interval=4, fresh_ratio=0.1, score_queries=16),
        "fora N3": ditcache.FORA(interval=3),
    }


def measure(name: str, batch: int, steps: int, repeats: int, only: list[str] | None = None) -> list[list]:
    model = ditcache.load_default(name)
    labels = [i % 10 for i in range(batch)]
    todo = {"uncached": None, **{k: m for k, m in methods(model.family).items()
                                 if not only or any(word in k for word in only)}}
    stats: dict[str, tuple[float, float]] = {}
    times: dict[str, list[float]] = {k: [] for k in todo}
    plan_share: dict[str, list[float]] = {k: [] for k in todo}
    for round_ in range(repeats + 1):  # the first round warms up and counts FLOPs (the counter slows calls)
        for key, method in todo.items():
            start = time.perf_counter()
            if round_ and method is None:  # timed uncached: the plain model, no hooks
                model.generate(labels, steps=steps, seed=0)
                run = None
            else:
                _, run = model.generate(labels, steps=steps, seed=0, method=method or "none", return_run=True,
                                        count_flops=not round_)
            wall = time.perf_counter() - start
            if round_:
                times[key].append(wall)
                if run is not None:
                    plan_share[key].append(sum(r.plan_s for r in run.stats.records) / wall)
            else:
                stats[key] = (run.stats.flops, 0.0)
            print(f"  {name} batch {batch} round {round_}: {key} {wall:.1f} s", flush=True)
    ref_wall, ref_flops = statistics.median(times["uncached"]), stats["uncached"][0]
    rows = []
    for key in todo:
        if key == "uncached":
            continue
        wall = statistics.median(times[key])
        fx, wx = ref_flops / stats[key][0], ref_wall / wall
        rows.append([name, batch, key, f"{ref_wall:.2f}", f"{wall:.2f}", f"{fx:.2f}", f"{wx:.2f}", f"{wx / fx:.0%}",
                     f"{statistics.median(plan_share[key]):.1%}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["dit256", "flux256"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="+", default=None,
                    help="time only the rows whose name contains one of these words (e.g. now taylorseer fora)")
    add_wait_policy(ap)
    add_allocator(ap)
    args = ap.parse_args()
    check_wait_policy(args, ap, _POLICY)
    check_allocator(args, ap, _ALLOCATOR)
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s), OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset (libgomp default)')}, "
          f"allocator {_ALLOCATOR}")
    rows = []
    for name in args.models:
        for batch, steps in ((16, 50), (100, 10)):
            rows += measure(name, batch, steps, args.repeats, args.only)
    print()
    print(markdown_table(["model", "batch", "method", "uncached s", "method s", "FLOP x", "wall x", "kept", "plan %"],
                         rows))


if __name__ == "__main__":
    main()
