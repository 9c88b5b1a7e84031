"""Issue 27's moonshot: how close does any setting come to 6x wall-clock on the 256-token defaults with the paired
FD difference's interval reaching 0 or below and class accuracy within 1 point, and where does the time go?

    python benchmarks/moonshot.py --models dit256 flux256 --seeds 200 --threads 2 [--wait-policy=passive|default]

Part 1 runs `ditcache bench` (same seeds, interleaved timing, --repeats rounds) over the most aggressive settings
of the fastest methods and states, per model, the fastest setting on each of three rungs:
- "FD shown not worse": the paired FD difference's 95% interval reaches 0 or below (its low end <= 0);
- "moonshot": that, and the accuracy difference's interval inside -1 point (its low end >= -0.01);
- the fastest setting at all.
Part 2 profiles one batch-16 generation of the uncached model and of the fastest setting at the same thread count
(torch.profiler, self CPU time per op) and splits the wall-clock into matrix products (linear layers, attention,
convolutions), the other tensor ops (elementwise, normalisation, copies, indexing) and the host (Python, hooks,
dispatch: the wall-clock the ops do not account for).
"""

from __future__ import annotations

import argparse
import os
import time

from process_settings import add_wait_policy, apply_wait_policy, check_wait_policy

_POLICY = apply_wait_policy()  # before torch loads: OpenMP reads it once
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import ditcache  # noqa: E402
from ditcache.bench import BenchConfig, Row, markdown_table, run_bench  # noqa: E402

# the fastest settings of the methods that lead the 4x-5x FLOP rows of BENCHMARKS.md, pushed further
SETTINGS = ("taylorseer:interval=6,order=2,taylorseer:interval=8,order=2,taylorseer:interval=10,order=2,"
            "fora:interval=6,fora:interval=8,freqca:interval=9,freqca:interval=12,hyca:interval=9,"
            "l2p:interval=9,l2p:interval=12,meancache")
MATMUL = ("addmm", "mm", "bmm", "baddbmm", "matmul", "scaled_dot_product", "convolution", "conv2d", "linear")


def rungs(rows: list[Row]) -> dict[str, Row | None]:
    """The fastest row on each rung (see the module docstring)."""
    ok = [r for r in rows[1:] if not r.error and r.wall_speedup is not None]
    fd_ok = [r for r in ok if r.fd_delta_ci is not None and r.fd_delta_ci[0] <= 0]
    moon = [r for r in fd_ok if r.accuracy_delta_ci is not None and r.accuracy_delta_ci[0] >= -0.01]
    best = lambda rs: max(rs, key=lambda r: r.wall_speedup) if rs else None  # noqa: E731
    return {"moonshot (FD and accuracy)": best(moon), "FD shown not worse": best(fd_ok), "fastest at all": best(ok)}


def breakdown(name: str, method: str | None, batch: int = 16, steps: int = 50) -> dict[str, float]:
    """Seconds of one generation: wall-clock (unprofiled, best of two) split in the shares of a profiled run."""
    model = ditcache.load_default(name)
    labels = torch.arange(batch) % 10

    def gen():
        model.generate(labels, steps=steps, seed=0, method=method, count_flops=False)

    gen()  # warm-up
    walls = []
    for _ in range(2):
        start = time.perf_counter()
        gen()
        walls.append(time.perf_counter() - start)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        gen()
        profiled = time.perf_counter() - start
    matmul = other = 0.0
    for ev in prof.key_averages():
        if not ev.key.startswith("aten::"):
            continue
        seconds = ev.self_cpu_time_total / 1e6
        if any(word in ev.key for word in MATMUL):
            matmul += seconds
        else:
            other += seconds
    # shares of the profiled run's own wall-clock (the profiler's per-op overhead lands in "host"), scaled to the
    # unprofiled wall-clock
    scale = min(walls) / profiled
    return {"wall": min(walls), "matmul": matmul * scale, "other": other * scale,
            "host": max(0.0, profiled - matmul - other) * scale}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["dit256", "flux256"])
    ap.add_argument("--methods", default=SETTINGS)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/moonshot")
    add_wait_policy(ap)
    args = ap.parse_args()
    check_wait_policy(args, ap, _POLICY)
    torch.set_num_threads(args.threads)
    rung_rows, split_rows = [], []
    for name in args.models:
        report = run_bench(BenchConfig(model=name, methods=args.methods, peers="none", seeds=args.seeds, steps=50,
                                       batch=16, repeats=args.repeats, threads=args.threads,
                                       out=f"{args.out}_{name}"), log=print)
        rows = [Row(**r) for r in report["rows"]]
        for rung, r in rungs(rows).items():
            if r is None:
                rung_rows.append([name, rung, "none", "-", "-", "-", "-"])
                continue
            rung_rows.append([name, rung, f"`{r.setting}`", f"{r.wall_speedup:.2f}", f"{r.flop_speedup:.2f}",
                              f"{r.fd_delta:+.2f} [{r.fd_delta_ci[0]:+.2f}, {r.fd_delta_ci[1]:+.2f}]",
                              f"{r.accuracy_delta:+.3f} "
                              f"[{r.accuracy_delta_ci[0]:+.3f}, {r.accuracy_delta_ci[1]:+.3f}]"])
        # profile the fastest setting on the highest rung anything reached: what limits the moonshot there
        top = next((r for r in rungs(rows).values() if r is not None), None)
        for method in [None] + ([top.setting] if top else []):
            b = breakdown(name, method)
            split_rows.append([name, f"`{method or 'uncached'}`", f"{b['wall']:.2f}"] + [
                f"{b[k]:.2f} ({b[k] / b['wall']:.0%})" for k in ("matmul", "other", "host")])
            print(split_rows[-1], flush=True)
    text = "\n".join([
        f"Command: `python benchmarks/moonshot.py --models {' '.join(args.models)} --seeds {args.seeds} "
        f"--repeats {args.repeats} --threads {args.threads} --wait-policy={_POLICY}` (settings: `{args.methods}`)",
        "",
        f"{args.seeds} seeds, 50 steps, batch 16, {args.threads} threads, wall-clock median of {args.repeats} "
        "interleaved rounds; intervals 95% bootstrap, paired", "",
        markdown_table(["model", "rung", "setting", "wall x", "FLOP x", "FD - uncached", "accuracy - uncached"],
                       rung_rows), "",
        "Where one batch-16, 50-step generation's time goes, for uncached and the fastest setting on the highest rung "
        "reached (shares of a profiled run: self CPU time per op; host = the rest, the profiler's own overhead "
        "included), scaled to the unprofiled wall-clock (best of two):", "",
        markdown_table(["model", "setting", "wall s", "matrix products s", "other tensor ops s", "host s"],
                       split_rows), ""])
    print(text)
    with open(f"{args.out}.md", "w") as f:  # read by make_benchmarks.py
        f.write(text)


if __name__ == "__main__":
    main()
