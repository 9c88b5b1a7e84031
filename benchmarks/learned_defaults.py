"""Train and ship the learned artifacts of the defaults; record L2C's threshold chosen from a benchmark.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/learned_defaults.py train --models dit flux
    OMP_WAIT_POLICY=PASSIVE python benchmarks/learned_defaults.py threshold --model dit \\
        --report benchmarks/results/dit/report.json

``train``: the L2C router, the TokenCache predictor and the HyCa calibration (50 steps, the configs'
defaults) into src/ditcache/models/weights/ (the shipped artifacts: this maintainers' script is the one
place that writes there), each with a JSON of its config and loss curve (or solver shares).
``threshold``: from a bench report holding L2C rows at several thresholds, the fastest (wall-clock)
whose FD in classifier space is within 2% of uncached (L2C's operating point: its paper's FID moved by
less than that at 1.3x) is recorded in the router, which then uses it by default.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ditcache.artifact import Artifact  # noqa: E402
from ditcache.learn.hyca import HyCaTrainConfig, train_hyca  # noqa: E402
from ditcache.learn.l2c import L2CTrainConfig, train_l2c  # noqa: E402
from ditcache.learn.tokencache import TokenCacheTrainConfig, train_tokencache  # noqa: E402
from ditcache.methods.artifacts import SHIPPED  # noqa: E402
from ditcache.models import load_default  # noqa: E402


def train(name: str, lam: float) -> None:
    model = load_default(name)
    for method, fn, cfg in (("l2c", train_l2c, L2CTrainConfig(lam=lam)),
                            ("tokencache", train_tokencache, TokenCacheTrainConfig()),
                            ("hyca", train_hyca, HyCaTrainConfig())):
        start = time.perf_counter()
        art, curve = fn(model, cfg)
        path = art.save(SHIPPED / f"{method}_{name}.safetensors")
        seconds = time.perf_counter() - start
        key = "solvers" if method == "hyca" else "losses"
        path.with_suffix(".json").write_text(json.dumps({"config": art.config, "seconds": round(seconds, 1),
                                                         key: curve}, indent=1))
        print(f"{name}: trained {method} in {seconds:.0f} s -> {path.name}")


def choose_threshold(name: str, report_path: Path) -> float | None:
    rows = json.loads(report_path.read_text())["rows"]
    ref_fd = rows[0]["fd"]
    ok = [r for r in rows[1:] if r["method"] == "l2c" and not r["error"] and r["fd"] is not None
          and r["fd"] <= 1.02 * ref_fd and "threshold=" in r["setting"]]
    best = max(ok, key=lambda r: r["wall_speedup"], default=None)
    if best is None:
        print(f"{name}: no L2C threshold keeps FD within 2% of uncached; nothing recorded")
        return None
    threshold = float(best["setting"].split("threshold=")[1].split(",")[0])
    path = SHIPPED / f"l2c_{name}.safetensors"
    art = Artifact.load(path, "l2c")
    art.config["threshold"] = threshold
    art.save(path)
    print(f"{name}: L2C threshold {threshold} ({best['wall_speedup']:.2f}x wall, {best['flop_speedup']:.2f}x FLOPs, "
          f"FD {best['fd']:.2f} vs {ref_fd:.2f} uncached) recorded in {path.name}")
    return threshold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--models", nargs="+", default=["dit", "flux"])
    t.add_argument("--lam", type=float, default=0.5)
    t.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("threshold")
    c.add_argument("--model", required=True)
    c.add_argument("--report", type=Path, required=True)
    args = ap.parse_args()
    if args.command == "train":
        torch.set_num_threads(args.threads)
        for name in args.models:
            train(name, args.lam)
    else:
        choose_threshold(args.model, args.report)


if __name__ == "__main__":
    main()
