"""Measurements behind the seed methods' defaults (issue 10): each a small bench on the shipped defaults.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/seed_choices.py [--models dit flux] [--seeds 256]

- ClusCa's refresh: refreshed tokens kept until the next full step ("persist") or dropped after their step;
  its k-means: L2 distances and 10 iterations (the default) or the reference's L1 and 100.
- Taylor differences: TaylorSeer's backward differences or Newton's divided differences.
- Flux single-stream blocks (flux only): cached after their gate (the old adapter entry, a residual) or
  before it (the current entry, which applies each step's own gate), for FORA and TaylorSeer.

Writes benchmarks/results/choices_<model>[_<part>]/report.{md,json} and prints the comparisons.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ditcache import adapters  # noqa: E402
from ditcache.bench import BenchConfig, run_bench  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def bench(model: str, methods: str, seeds: int, out: Path) -> dict:
    return run_bench(BenchConfig(model=model, methods=methods, peers="none", seeds=seeds, repeats=3, out=str(out),
                                 threads=torch.get_num_threads()), log=lambda *a: None)


def rows_of(report: dict) -> list[str]:
    ref = report["rows"][0]
    out = []
    for r in report["rows"][1:]:
        if r["error"]:
            out.append(f"| `{r['setting']}` | error: {r['error']} |")
            continue
        out.append(f"| `{r['setting']}` | {r['flop_speedup']:.2f} | {r['wall_speedup']:.2f} | {r['psnr']:.2f} "
                   f"[{r['psnr_ci'][0]:.2f}, {r['psnr_ci'][1]:.2f}] | {r['fd']:.2f} (uncached {ref['fd']:.2f}) | "
                   f"{r['fd_delta']:+.2f} [{r['fd_delta_ci'][0]:+.2f}, {r['fd_delta_ci'][1]:+.2f}]"
                   f"{' *' if r['fd_significant'] else ''} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["dit", "flux"])
    ap.add_argument("--seeds", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    header = "| setting | FLOP x | wall x | PSNR dB [95% CI] | FD | FD - uncached [95% CI] |\n|---|---|---|---|---|---|"
    for model in args.models:
        methods = ("clusca:interval=5,clusters=8,refresh=persist,clusca:interval=5,clusters=8,refresh=step,"
                   "clusca:interval=5,clusters=8,distance=l1,max_iters=100,"
                   "taylorseer:interval=4,order=2,taylorseer:interval=4,order=2,forecast=newton,"
                   "taylorseer:interval=6,order=2,taylorseer:interval=6,order=2,forecast=newton")
        report = bench(model, methods, args.seeds, ROOT / "benchmarks" / "results" / f"choices_{model}")
        print(f"\n## {model}: ClusCa refresh, Taylor differences ({args.seeds} seeds)\n\n{header}")
        print("\n".join(rows_of(report)))
        if model.startswith("flux"):
            gate = "fora:interval=3,taylorseer:interval=4,order=2"
            after = bench(model, gate, args.seeds, ROOT / "benchmarks" / "results" / f"choices_{model}_gate_after")
            spec = adapters.BLOCKS["FluxSingleTransformerBlock"]
            adapters.register_block("FluxSingleTransformerBlock", *spec.branches, outputs=spec.outputs,
                                    image_out=spec.image_out)  # the old entry: cached after the gate
            try:
                before = bench(model, gate, args.seeds,
                               ROOT / "benchmarks" / "results" / f"choices_{model}_gate_before")
            finally:
                adapters.BLOCKS["FluxSingleTransformerBlock"] = spec
            print(f"\n## {model}: single-stream blocks cached after the gate (before the fix)\n\n{header}")
            print("\n".join(rows_of(before)))
            print(f"\n## {model}: cached before the gate, each step's own gate applied (now)\n\n{header}")
            print("\n".join(rows_of(after)))
        (ROOT / "benchmarks" / "results" / f"choices_{model}.done").write_text(json.dumps({"seeds": args.seeds}))


if __name__ == "__main__":
    main()
