"""L2P and MeanCache settings against uncached (issue 27, item 4): the choices behind their defaults.

    python benchmarks/new_methods.py --model dit256 --seeds 8

PSNR against the uncached images of the same seeds and FLOP speedup (planning included), 50 steps, for
MeanCache's span K at intervals 5 and 7, its two coordinate units, L2P's counter schedule against the
reference's lists (with the shipped predictor, ``ditcache train l2p``), and TaylorSeer and FreqCa at
similar FLOPs. One generation of ``--seeds`` images per setting; the bench sweeps give intervals and FD.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="dit256")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import ditcache
    from ditcache import metrics
    from ditcache.bench.report import markdown_table
    from ditcache.methods import describe
    from ditcache.models import load_default

    model = load_default(args.model)
    labels = [i % 10 for i in range(args.seeds)]
    ref, ref_run = model.generate(labels, steps=args.steps, seed=100, method="none", return_run=True)
    settings = [ditcache.TaylorSeer(interval=5, order=2), ditcache.FreqCa(interval=6)]
    settings += [ditcache.MeanCache(interval=5, span=k) for k in (1, 2, 3, 4)]
    settings += [ditcache.MeanCache(interval=7, span=k) for k in (1, 2, 3)]
    settings += [ditcache.MeanCache(interval=5, units="timestep")]
    settings += [ditcache.L2P(artifact=args.model, interval=n, schedule=s) for s in ("counter", "reference")
                 for n in (5, 7)]
    rows = []
    for method in settings:
        out, run = model.generate(labels, steps=args.steps, seed=100, method=method, return_run=True)
        rows.append([f"`{describe(method)}`", f"{ref_run.stats.flops / run.stats.flops:.2f}",
                     f"{metrics.psnr(out, ref):.2f}"])
        print(" | ".join(rows[-1]), flush=True)
    print(f"\n{args.model}, {args.seeds} seeds, {args.steps} steps. Command: python benchmarks/new_methods.py "
          + " ".join(sys.argv[1:]) + "\n")
    print(markdown_table(["setting", "FLOP x", "PSNR dB vs uncached"], rows))


if __name__ == "__main__":
    main()
