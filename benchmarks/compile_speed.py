"""torch.compile on the CPU: eager vs compiled generations of the shipped defaults, uncached and cached.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/compile_speed.py [--models dit flux] [--threads 1]

For each model and method (uncached, FORA N=3, TaylorSeer N=4 O=2): one 16-image, 50-step CFG generation
eager and one with ``torch.compile(model.transformer)`` (inductor), after a warm-up generation that pays the
compilation (its time is reported apart), timed round-robin (median of --repeats). Prints a markdown table:
seconds, compiled speedup, and the graphs dynamo built (none after the warm-up generation is the promise).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch._dynamo.utils as dynamo_utils  # noqa: E402

import ditcache  # noqa: E402
from ditcache.bench import markdown_table  # noqa: E402
from ditcache.sampling import sample  # noqa: E402

METHODS = {"uncached": None, "FORA N=3": ditcache.FORA(interval=3),
           "TaylorSeer N=4 O=2": ditcache.TaylorSeer(interval=4, order=2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["dit", "flux"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        model = ditcache.load_default(name)
        labels = torch.arange(16) % 10
        cond, uncond = model.conditioning(labels)
        noise = model.initial_noise(16, 0)
        compiled = torch.compile(model.transformer)

        def run(transformer, method):
            if method is None:
                return sample(transformer, noise, cond, uncond, steps=50, guidance_scale=3.0)
            with ditcache.cached(transformer, method, count_flops=False):
                return sample(transformer, noise, cond, uncond, steps=50, guidance_scale=3.0)

        for label, method in METHODS.items():
            torch._dynamo.reset()
            start = time.perf_counter()
            run(compiled, method)  # warm-up: compilation
            warm = time.perf_counter() - start
            graphs = dynamo_utils.counters["stats"]["unique_graphs"]
            times = {"eager": [], "compiled": []}
            for _ in range(args.repeats):
                for which, transformer in (("eager", model.transformer), ("compiled", compiled)):
                    start = time.perf_counter()
                    run(transformer, method)
                    times[which].append(time.perf_counter() - start)
            new_graphs = dynamo_utils.counters["stats"]["unique_graphs"] - graphs
            eager, comp = statistics.median(times["eager"]), statistics.median(times["compiled"])
            rows.append([name, label, f"{warm:.1f}", f"{eager:.2f}", f"{comp:.2f}", f"{eager / comp:.2f}",
                         str(graphs), str(new_graphs)])
            print(rows[-1], flush=True)
    print()
    print(markdown_table(["model", "method", "first compiled generation s", "eager s", "compiled s",
                          "compiled speedup", "graphs built", "graphs built after the first generation"], rows))


if __name__ == "__main__":
    main()
