"""The context-parallel comparison, as a script (the same as ``ditcache bench --context-parallel N``; see
``ditcache.bench.context_parallel``):

    OMP_WAIT_POLICY=PASSIVE torchrun --nproc-per-node 2 benchmarks/context_parallel.py --model flux256
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ditcache.bench.context_parallel import run  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="flux256", help="a shipped default with a diffusers _cp_plan: flux, "
                    "flux256 (Flux) or video (Wan)")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=28)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    ap.add_argument("--out", default=None, help="also write the table here (rank 0)")
    args = ap.parse_args()
    run(args.model, args.seeds, args.steps, args.threads, args.out)
