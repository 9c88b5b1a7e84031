"""The Taylor time axis: step indices (the references' unit, the default) against timestep values, on the
`flux` default sampled with a shifted flow schedule (shift 3: steps uneven in t, as FLUX.1-dev's pipelines use).

    python benchmarks/time_axis.py --images 100 --threads 1

Prints, per TaylorSeer setting, PSNR against the uncached images (same seeds, same shifted schedule) in
both units with 95% bootstrap intervals over images, and the paired difference (timestep - step).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler  # noqa: E402

import ditcache  # noqa: E402
from ditcache.forecast import Taylor  # noqa: E402
from ditcache.models import load_default  # noqa: E402
from ditcache.sampling import sample  # noqa: E402


def images(model, labels, seed, method, shift):
    cond, uncond = model.conditioning(labels)
    noise = model.initial_noise(labels.shape[0], seed)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    run = ditcache.apply(model.transformer, method, scheduler=scheduler) if method else None
    try:
        latents = sample(model.transformer, noise, cond, uncond, steps=50, guidance_scale=model.default_guidance_scale,
                         scheduler=scheduler)
    finally:
        if run is not None:
            run.remove()
    return model.decode(latents)


def psnr_each(a, b):  # (N, 1, 28, 28) in [-1, 1] -> (N,) dB, data range 2
    mse = ((a - b) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse)


def interval(values, resamples=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(values), (resamples, len(values)), generator=g)
    means = values[idx].mean(1)
    return float(values.mean()), float(means.quantile(0.025)), float(means.quantile(0.975))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--shift", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_default("flux")
    settings = {
        "taylorseer (interval 4, order 2)": dict(interval=4, order=2, warmup=2),
        "taylorseer:interval=6,warmup=3 (order 2)": dict(interval=6, order=2, warmup=3),
    }
    batches = range(args.images // args.batch)
    labels = [torch.arange(args.batch) % 10 for _ in batches]
    ref = torch.cat([images(model, labels[i], i, None, args.shift) for i in batches])
    print(f"flux, 50 steps, FlowMatchEuler shift {args.shift}, {len(ref)} images, {args.threads} thread(s)")
    print("| setting | PSNR dB, step units [95% CI] | PSNR dB, timestep units [95% CI] | timestep - step [95% CI] |")
    print("|---|---|---|---|")
    for name, kw in settings.items():
        scores = {}
        for units in ("step", "timestep"):
            method = ditcache.TaylorSeer(**kw, forecast=Taylor(units=units))
            out = torch.cat([images(model, labels[i], i, method, args.shift) for i in batches])
            scores[units] = psnr_each(out, ref)
        cells = [interval(scores["step"]), interval(scores["timestep"]), interval(scores["timestep"] - scores["step"])]
        text = [f"{m:.2f} [{lo:.2f}, {hi:.2f}]" for m, lo, hi in cells[:2]]
        m, lo, hi = cells[2]
        print(f"| {name} | " + " | ".join(text + [f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]"]) + " |")


if __name__ == "__main__":
    main()
