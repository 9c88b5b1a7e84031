"""Issue 5 measurements: TokenCache predictor architecture, its TPRR schedule, and L2C full-step patterns.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/learned_choices.py --model dit [--seeds 32]

1. Trains a TokenCache predictor of each architecture ("table", "factored") with the same budget and
   compares their loss on trajectories not used in training, and the PSNR vs uncached of generations
   at the same token ratio and schedule.
2. Sweeps TPRR (k1, k2, boundary) and the whole-site threshold with the shipped predictor: FLOP speedup and PSNR.
3. Trains L2C routers for full-step intervals 2 and 3 and compares them at several thresholds.

`--parts tprr` runs only the sweep (no training: a few minutes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from dataclasses import replace

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import ditcache  # noqa: E402
from ditcache import metrics  # noqa: E402
from ditcache.bench import markdown_table  # noqa: E402
from ditcache.learn.common import record_trajectory  # noqa: E402
from ditcache.learn.l2c import L2CTrainConfig, train_l2c  # noqa: E402
from ditcache.learn.tokencache import TokenCacheTrainConfig, train_tokencache  # noqa: E402
from ditcache.models import load_default  # noqa: E402


def held_out_loss(model, art, traj) -> float:
    """Mean relative blend error of a predictor on a trajectory it never saw (teacher forcing, as trained)."""
    from ditcache.learn.common import _Blend

    logits = art.tensors["logits"]
    tokens = art.tensors["tokens"].tolist()
    blend = _Blend()
    errs = []
    with torch.no_grad(), ditcache.cached(model.transformer, blend) as run:
        for i in range(1, len(traj.timesteps)):
            w = torch.sigmoid(logits[i])
            weights = [w[s, :n].unsqueeze(-1) if n > 1 else w[s, :1].mean() for s, n in enumerate(tokens)]
            run.set_schedule([traj.timesteps[i - 1], traj.timesteps[i]])
            blend.weights = None
            model.transformer(**traj.inputs[i - 1], return_dict=False)
            blend.weights = [torch.zeros(())] * len(tokens)
            reuse = model.transformer(**traj.inputs[i], return_dict=False)[0]
            run.set_schedule([traj.timesteps[i - 1], traj.timesteps[i]])
            blend.weights = None
            model.transformer(**traj.inputs[i - 1], return_dict=False)
            blend.weights = weights
            out = model.transformer(**traj.inputs[i], return_dict=False)[0]
            ref = traj.outputs[i]
            errs.append(float(((out - ref) ** 2).mean() / ((reuse - ref) ** 2).mean().clamp_min(1e-12)))
    return statistics.fmean(errs)


def psnr_of(model, method, labels, seeds):
    """PSNR vs uncached over `seeds` batches, the last batch's run stats and the FLOP speedup over all batches."""
    ref, out, flops_ref, flops = [], [], 0, 0
    for s in seeds:
        images, run = model.generate(labels, seed=s, method="none", return_run=True)
        ref.append(images)
        flops_ref += run.stats.flops
        images, run = model.generate(labels, seed=s, method=method, return_run=True)
        out.append(images)
        flops += run.stats.flops
    return metrics.psnr(torch.cat(out), torch.cat(ref)), run.stats, flops_ref / flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="dit")
    ap.add_argument("--seeds", type=int, default=2, help="batches of 10 images for the PSNR columns")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parts", default="arch,tprr,l2c", help="comma list of: arch, tprr, l2c")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if not parts or parts - {"arch", "tprr", "l2c"}:
        ap.error(f"--parts takes a comma list of arch, tprr, l2c; got {args.parts!r}")
    torch.set_num_threads(args.threads)
    model = load_default(args.model)
    labels = list(range(10))
    seeds = [100 + s for s in range(args.seeds)]
    tmp = tempfile.mkdtemp()

    if "arch" in parts:
        architectures(model, labels, seeds, tmp)
    if "tprr" in parts:
        tprr(model, args.model, labels, seeds)
    if "l2c" in parts:
        l2c_patterns(model, args.model, labels, seeds, tmp)


def architectures(model, labels, seeds, tmp) -> None:
    print("\n## TokenCache predictor architecture (same budget: 400 iters, 2 trajectory batches)\n")
    held = record_trajectory(model, labels, 50, seed=999)  # never used in training
    rows = []
    for arch in ("table", "factored"):
        art, losses = train_tokencache(model, TokenCacheTrainConfig(architecture=arch))
        path = art.save(f"{tmp}/tc_{arch}.safetensors")
        t, s, n = art.tensors["logits"].shape
        n_params = t * s * n if arch == "table" else t * s + s * n + t * n
        p, _, _ = psnr_of(model, ditcache.TokenCache(artifact=str(path)), labels, seeds)
        rows.append([arch, n_params, f"{statistics.fmean(losses[-50:]):.4f}",
                     f"{held_out_loss(model, art, held):.4f}", f"{p:.2f}"])
    print(markdown_table(["architecture", "parameters", "train loss (last 50)", "held-out relative error",
                          "PSNR vs uncached (ratio 0.3, k1 4, k2 2)"], rows))


def tprr(model, name, labels, seeds) -> None:
    print(f"\n## TPRR schedule and whole-site threshold sweep ({name}, shipped predictor)\n")
    rows = []
    base = ditcache.TokenCache(artifact=name)
    # (ratio, k1, k2, boundary, site_threshold): the schedule grid at the defaults' ratio and threshold, then
    # the whole-site threshold, then dense-early orders and the bench's aggressive points
    grid = [(0.3, k1, k2, b, 0.5) for k1, k2, b in ((2, 2, 0.5), (3, 2, 0.5), (4, 2, 0.5), (4, 3, 0.5),
                                                     (6, 2, 0.5), (2, 4, 0.5), (4, 2, 0.3), (4, 2, 0.7))]
    grid += [(0.3, 4, 2, 0.5, 0.7), (0.3, 4, 2, 0.5, 0.9), (0.3, 4, 3, 0.5, 0.7), (0.3, 2, 4, 0.5, 0.7),
             (0.3, 2, 6, 0.5, 0.7), (0.1, 2, 6, 0.5, 0.7), (0.2, 6, 3, 0.5, 0.7), (0.1, 6, 4, 0.6, 0.7)]
    for ratio, k1, k2, boundary, thr in grid:
        m = replace(base, ratio=ratio, k1=k1, k2=k2, boundary=boundary, site_threshold=thr)
        p, stats, speedup = psnr_of(model, m, labels, seeds)
        rows.append([ratio, k1, k2, boundary, thr, stats.full_steps(), f"{speedup:.2f}", f"{p:.2f}"])
    print(markdown_table(["ratio", "k1 (early)", "k2 (late)", "boundary", "site threshold", "full steps",
                          "FLOPs x", "PSNR vs uncached"], rows))


def l2c_patterns(model, name, labels, seeds, tmp) -> None:
    print(f"\n## L2C full-step patterns ({name})\n")
    rows = []
    for interval in (2, 3):
        art, _ = train_l2c(model, L2CTrainConfig(interval=interval))
        path = art.save(f"{tmp}/l2c_{interval}.safetensors")
        for thr in (0.1, 0.5, 0.9):
            p, stats, speedup = psnr_of(model, ditcache.L2C(artifact=str(path), threshold=thr, interval=interval),
                                        labels, seeds)
            c = stats.counts()
            rows.append([interval, thr, f"{c['full'] / (c['full'] + c['reuse']):.2f}", f"{speedup:.2f}",
                         f"{p:.2f}"])
    print(markdown_table(["interval", "threshold", "share of branch calls computed", "FLOPs x",
                          "PSNR vs uncached"], rows))


if __name__ == "__main__":
    main()
