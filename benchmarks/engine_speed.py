"""Issue 2 benchmark: engine overhead and FORA / TaylorSeer speedups on random-weight DiT and Flux.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/engine_speed.py [--repeats 5] [--threads 2]

Each model is sized so one uncached 50-step generation (1 image, CFG as a doubled batch) takes about
1 s on 2 CPU cores. All variants are timed round-robin in this one process; the table gives medians
and ratios against the unhooked model. FLOPs come from torch's counter through run.stats.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import ditcache  # noqa: E402
from ditcache import zoo  # noqa: E402
from ditcache.bench import markdown_table, median, relative_error, time_interleaved  # noqa: E402
from ditcache.methods import describe  # noqa: E402
from ditcache.sampling import sample  # noqa: E402

VARIANTS = {
    "every step (FORA N=1)": ditcache.FORA(interval=1),
    "FORA N=2": ditcache.FORA(interval=2),
    "FORA N=3": ditcache.FORA(interval=3),
    "FORA N=5": ditcache.FORA(interval=5),
    "TaylorSeer N=3 O=1": ditcache.TaylorSeer(interval=3, order=1),
    "TaylorSeer N=3 O=2": ditcache.TaylorSeer(interval=3, order=2),
    "TaylorSeer N=5 O=1": ditcache.TaylorSeer(interval=5, order=1),
    "TaylorSeer N=5 O=2": ditcache.TaylorSeer(interval=5, order=2),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--models", default="dit-bench,flux-bench")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    for name in args.models.split(","):
        model = zoo.build(name)
        noise, cond, uncond = zoo.conditioning(name, 1, seed=0)

        def generate(method=None):
            if method is None:
                return sample(model, noise, cond, uncond, steps=args.steps, guidance_scale=4.0), None
            with ditcache.cached(model, method) as run:
                return sample(model, noise, cond, uncond, steps=args.steps, guidance_scale=4.0), run

        ref, base_run = generate(ditcache.NoCache())  # FLOPs of the uncached model, counted
        results = {label: generate(m) for label, m in VARIANTS.items()}
        fns = {"uncached": lambda: generate(None)}
        fns.update({label: (lambda m=m: generate(m)) for label, m in VARIANTS.items()})
        times = time_interleaved(fns, repeats=args.repeats)
        t0 = median(times["uncached"])
        rows = [["uncached (unhooked)", args.steps, f"{base_run.stats.flops / 1e9:.1f}", "1.00", "1.00",
                 f"{t0:.3f}", "-", "0"]]
        for label, m in VARIANTS.items():
            out, run = results[label]
            flop_x = base_run.stats.flops / run.stats.flops
            wall_x = t0 / median(times[label])
            rows.append([
                f"{label} (`{describe(m, full=True)}`)", run.stats.full_steps(), f"{run.stats.flops / 1e9:.1f}",
                f"{flop_x:.2f}", f"{wall_x:.2f}", f"{median(times[label]):.3f}",
                f"{wall_x / flop_x:.0%}", f"{relative_error(out, ref):.2e}",
            ])
        params = sum(p.numel() for p in model.parameters())
        print(f"\n### {name}: {type(model).__name__}, {params / 1e6:.1f}M params, {args.steps} steps, batch 1 + CFG, "
              f"{args.threads} threads, median of {args.repeats} interleaved runs\n")
        print(markdown_table(
            ["variant", "full steps", "GFLOPs", "FLOP speedup", "wall speedup", "median s",
             "wall/FLOP speedup", "rel. error vs uncached"], rows))
        overhead = median(times["every step (FORA N=1)"]) / t0 - 1
        print(f"\nhook overhead with every step computed: {overhead:+.1%} (target <= 2%)")


if __name__ == "__main__":
    main()
