"""How much counting planning FLOPs moves each token method's FLOP speedup (issue 27, item 1).

    python benchmarks/planning_flops.py --model dit256 --seeds 4 --steps 50

Planning (ToCa's token scores, ClusCa's k-means, SpeCa's verification) used to run outside the counted
model calls, so "FLOP x" left it out. Each run's stats now carry it (``RunStats.plan_flops``, included
in ``RunStats.flops``). For each token-level setting of the bench sweep this prints the FLOP speedup
without planning (old: uncached / model FLOPs) and with it (new: uncached / (model + planning)), from
one generation of ``--seeds`` images per setting (FLOPs depend on the seeds only through k-means'
iteration counts and SpeCa's decisions).
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

TOKEN_METHODS = ("toca", "clusca", "hi-clusca", "tokencache", "speca")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="dit256")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=",".join(TOKEN_METHODS), help="sweep names (bench's) to measure")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from ditcache.bench.report import markdown_table
    from ditcache.bench.settings import sweeps
    from ditcache.methods import describe
    from ditcache.methods.artifacts import for_model
    from ditcache.models import load_default

    model = load_default(args.model)
    family = "flux" if args.model.startswith("flux") else ("latte" if args.model == "video" else "dit")
    labels = [i % 10 for i in range(args.seeds)]
    _, ref = model.generate(labels, steps=args.steps, seed=0, method="none", return_run=True)
    ref_flops = ref.stats.flops
    rows = []
    table = sweeps(family)
    for name in args.methods.split(","):
        for method in table[name]:
            method = for_model(method, args.model)
            text = describe(method)
            uncounted = _count_plan(method)  # what plan() runs: the part the old count left out
            _, run = model.generate(labels, steps=args.steps, seed=0, method=method, return_run=True)
            s = run.stats
            old, new = ref_flops / (s.flops - uncounted[0]), ref_flops / s.flops
            rows.append([name, f"`{text}`", f"{s.plan_flops / 1e9 / args.seeds:.4f}",
                         f"{uncounted[0] / 1e9 / args.seeds:.4f}", f"{s.plan_flops / s.flops:.2%}",
                         f"{old:.3f}", f"{new:.3f}", f"{new / old - 1:+.2%}"])
            print(" | ".join(rows[-1]), flush=True)
    print(f"\n{args.model}, {args.seeds} seeds (one batch, CFG doubled), {args.steps} steps; uncached "
          f"{ref_flops / 1e9 / args.seeds:.3f} GFLOPs/img. FLOPs by torch's counter (matrix products, attention, "
          "distances). Command: python benchmarks/planning_flops.py " + " ".join(sys.argv[1:]) + "\n")
    print("plan GFLOPs/img: all planning (plan() and SpeCa's verification, which the old count already included "
          "inside the model call); of it in plan(): what the old count left out.\n")
    print(markdown_table(["method", "setting", "plan GFLOPs/img", "of it in plan()", "plan share",
                          "FLOP x as counted before (old)", "FLOP x with planning (new)", "moved"], rows))


def _count_plan(method) -> list[int]:
    """Make ``method.plan`` count its own FLOPs (through a subclass, so a run's copy of a learned method counts
    too); returns the one-item list the total accumulates in."""
    from ditcache.engine import flop_counter

    total = [0]
    base = type(method)

    def plan(self, ctx, sites, store):
        with flop_counter() as counter:
            out = base.plan(self, ctx, sites, store)
        total[0] += counter.get_total_flops()
        return out

    method.__class__ = type(base.__name__, (base,), {"plan": plan})
    return total


if __name__ == "__main__":
    main()
