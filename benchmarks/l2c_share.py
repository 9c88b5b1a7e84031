"""What share of the layers a Learning-to-Cache router removes on the cache steps, per threshold, beside the
FD difference a claims run measured for it (the paper's figure: 93.68% of U-ViT-H/2's layers removed on the
cache steps at under 0.01 FID drop).

    python benchmarks/l2c_share.py --model uvit --report benchmarks/results/claims_uvit/report.json

A branch site (attention or MLP of a block) counts as a layer; the router is static (one score per step and
site), so the share is read from the artifact: the (cache step, site) pairs whose score does not exceed the
threshold, over all of them. FD "within 1%" means the paired FD difference's upper bound lies at or below 1% of
uncached FD (the interval decides).
"""

from __future__ import annotations

import argparse
import json
import re

import torch

from ditcache.methods.artifacts import load_artifact
from ditcache.plan import periodic_full


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="uvit")
    ap.add_argument("--report", required=True)
    args = ap.parse_args()
    art = load_artifact(args.model, "l2c")
    beta = torch.sigmoid(art.tensors["theta"])                                  # (T, S)
    steps, interval = beta.shape[0], art.config["interval"]
    cache = [s for s in range(steps) if not periodic_full(s, 0, interval)]
    report = json.loads(open(args.report).read())
    rows = report["rows"]
    ref = next(r for r in rows if r["setting"] == "uncached")
    print(f"{args.model}: {len(cache)} cache steps of {steps}, {beta.shape[1]} branch sites; uncached FD "
          f"{ref['fd']:.2f}, 1% = {0.01 * ref['fd']:.2f}")
    print("| setting | layers removed on cache steps | FLOP x | FD - uncached [95% CI] | within 1% (upper bound) |")
    print("|---|---|---|---|---|")
    for r in rows:
        if r["method"] != "l2c" or r.get("error"):
            continue
        threshold = float(re.search(r"threshold=([0-9.]+)", r["setting"]).group(1))
        removed = float((beta[cache] <= threshold).float().mean())
        lo, hi = r["fd_delta_ci"]
        within = "yes" if hi <= 0.01 * ref["fd"] else "not shown"
        print(f"| `{r['setting']}` | {removed:.2%} | {r['flop_speedup']:.2f} | {r['fd_delta']:+.2f} [{lo:+.2f}, "
              f"{hi:+.2f}] | {within} |")


if __name__ == "__main__":
    main()
