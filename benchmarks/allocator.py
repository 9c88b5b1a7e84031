"""What glibc's allocator costs a cached step: ClusCa's refresh (tokens.refresh) timed alone at dit256's sizes
with glibc as it is and with --allocator=tuned (benchmarks/process_settings.py), each in its own process.

    python benchmarks/allocator.py [--threads 1] [--calls 200]

A refresh allocates full-size outputs (B, N, D) and frees them; glibc as it is returns a freed heap top to the
system, so the next call's buffers fault their pages in again. Prints the median of 5 timed blocks per setting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from process_settings import apply_allocator

HERE = Path(__file__).resolve().parent
SHAPE = (32, 256, 128)  # dit256 at batch 16 with CFG: (B, N, D) of one MLP site
CLUSTERS = 16           # ClusCa's default K


def child(threads: int, calls: int) -> dict:
    """Seconds per refresh (median of 5 blocks of ``calls``), with and without propagation, in this process."""
    import statistics
    import time

    import torch

    from ditcache import tokens as T

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    b, n, d = SHAPE
    labels = torch.randint(CLUSTERS, (b, n), generator=gen)
    anchor, base = torch.randn(SHAPE, generator=gen), torch.randn(SHAPE, generator=gen)
    idx = T.one_per_cluster(labels, CLUSTERS, gen)
    fresh = torch.randn(b, CLUSTERS, d, generator=gen)
    cases = {"refresh with propagation": (labels, CLUSTERS, 0.005), "refresh without propagation": None}
    out = {}
    for name, propagate in cases.items():
        def call():
            T.refresh(anchor, base, idx, fresh, propagate)
        for _ in range(10):
            call()
        blocks = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(calls):
                call()
            blocks.append((time.perf_counter() - start) / calls)
        out[name] = statistics.median(blocks)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--allocator", default="default", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.threads, args.calls)))
        return
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), "HF_HUB_OFFLINE": "1"}
    results = {}
    for allocator in ("default", "tuned"):
        proc = subprocess.run([sys.executable, str(HERE / "allocator.py"), "--child", f"--allocator={allocator}",
                               "--threads", str(args.threads), "--calls", str(args.calls)],
                              env=env, capture_output=True, text=True, check=True)
        results[allocator] = json.loads(proc.stdout)
    print(f"{SHAPE[0]} x {SHAPE[1]} x {SHAPE[2]}, K {CLUSTERS}, {args.threads} thread(s); ms per call")
    print("| call | glibc as it is | --allocator=tuned | ratio |")
    print("|---|---|---|---|")
    for name in results["default"]:
        a, b = results["default"][name] * 1e3, results["tuned"][name] * 1e3
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.1f}x |")


if __name__ == "__main__":
    if "--child" in sys.argv:
        apply_allocator()  # before the first large allocation
    main()
