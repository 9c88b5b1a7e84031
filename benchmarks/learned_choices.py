"""Issue 5 measurements: TokenCache predictor architecture, its TPRR schedule, and L2C full-step patterns.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/learned_choices.py --model dit [--seeds 32]

1. Trains a TokenCache predictor of each architecture ("table", "factored") with the same budget and
   compares their loss on trajectories not used in training, and the PSNR vs uncached of generations
   at the same token ratio and schedule.
2. Sweeps TPRR (k1, k2, boundary) with the shipped predictor: FLOP speedup and PSNR.
3. Trains L2C routers for full-step intervals 2 and 3 and compares them at several thresholds.
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
    ref = torch.cat([model.generate(labels, seed=s) for s in seeds])
    out = torch.cat([model.generate(labels, seed=s, method=method) for s in seeds])
    return metrics.psnr(out, ref), model.last_run.stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="dit")
    ap.add_argument("--seeds", type=int, default=2, help="batches of 10 images for the PSNR columns")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_default(args.model)
    labels = list(range(10))
    seeds = [100 + s for s in range(args.seeds)]
    tmp = tempfile.mkdtemp()

    print(f"\n## TokenCache predictor architecture ({args.model}, same budget: 400 iters, 2 trajectory batches)\n")
    held = record_trajectory(model, labels, 50, seed=999)  # never used in training
    rows = []
    for arch in ("table", "factored"):
        art, losses = train_tokencache(model, TokenCacheTrainConfig(architecture=arch))
        path = art.save(f"{tmp}/tc_{arch}.safetensors")
        t, s, n = art.tensors["logits"].shape
        n_params = t * s * n if arch == "table" else t * s + s * n + t * n
        p, stats = psnr_of(model, ditcache.TokenCache(artifact=str(path)), labels, seeds)
        rows.append([arch, n_params, f"{statistics.fmean(losses[-50:]):.4f}",
                     f"{held_out_loss(model, art, held):.4f}", f"{p:.2f}"])
    print(markdown_table(["architecture", "parameters", "train loss (last 50)", "held-out relative error",
                          "PSNR vs uncached (ratio 0.3, k1 4, k2 2)"], rows))

    print(f"\n## TPRR schedule sweep ({args.model}, shipped predictor)\n")
    rows = []
    base = ditcache.TokenCache(artifact=args.model)
    for k1, k2, boundary in ((2, 2, 0.5), (3, 2, 0.5), (4, 2, 0.5), (4, 3, 0.5), (6, 2, 0.5), (2, 4, 0.5),
                             (4, 2, 0.3), (4, 2, 0.7)):
        m = replace(base, k1=k1, k2=k2, boundary=boundary)
        p, stats = psnr_of(model, m, labels, seeds)
        full = stats.full_steps()
        rows.append([k1, k2, boundary, full, f"{p:.2f}"])
    print(markdown_table(["k1 (early)", "k2 (late)", "boundary", "full steps", "PSNR vs uncached"], rows))

    print(f"\n## L2C full-step patterns ({args.model})\n")
    rows = []
    for interval in (2, 3):
        art, _ = train_l2c(model, L2CTrainConfig(interval=interval))
        path = art.save(f"{tmp}/l2c_{interval}.safetensors")
        for thr in (0.1, 0.5, 0.9):
            p, stats = psnr_of(model, ditcache.L2C(artifact=str(path), threshold=thr, interval=interval), labels,
                               seeds)
            c = stats.counts()
            rows.append([interval, thr, f"{c['full'] / (c['full'] + c['reuse']):.2f}", f"{p:.2f}"])
    print(markdown_table(["interval", "threshold", "share of branch calls computed", "PSNR vs uncached"], rows))


if __name__ == "__main__":
    main()
