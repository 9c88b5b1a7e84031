"""Seeded training of the default models on Fashion-MNIST (CPU, fp32).

    python -m ditcache.models.train --model dit --steps 1350 --batch-size 128 --threads 1

Writes <out>.safetensors (EMA weights), <out>.json (architecture, conditioning sizes, training
settings) and <out>_loss.csv (step, mean loss over the last log_every steps, seconds) next to it;
the weights and JSON are rewritten every log_every steps, so a stopped run leaves a usable model.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ditcache.data import load_fashion_mnist
from ditcache.models.defaults import (
    MODELS,
    NULL_CLASS,
    WEIGHTS_DIR,
    DiTDefault,
    build,
    spec_dict,
    state_dict,
    trainable_modules,
)


@dataclass
class TrainConfig:
    lr: float = 1e-3  # AdamW peak lr; DiT-XL uses 1e-4, but a width-128 model on a ~1.4k-step budget wants more
    warmup_steps: int = 100  # linear warmup from 0, then constant (DiT trains at constant lr)
    # after warm-up: "constant" (DiT's choice) or "linear", decaying to 0 at the run's last step, a
    # cooldown for the final stage of a run continued with --init-from (only worth it run to the end)
    schedule: str = "constant"
    weight_decay: float = 0.0  # DiT paper uses no weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW defaults
    grad_clip: float = 1.0  # max global grad norm; guards the first steps of a from-scratch run
    ema_decay: float = 0.995  # EMA of weights; half-life ~140 steps, short because runs are ~1.5k steps
    class_dropout: float = 0.1  # share of labels replaced by NULL_CLASS for CFG (DiT paper: 0.1)


SCHEDULES = ("constant", "linear")


def lr_at(config: TrainConfig, step: int, steps: int) -> float:
    """The lr of 1-based `step` of `steps`: linear warm-up from 0, then constant or a linear decay
    that reaches 0 at step `steps`."""
    if config.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {config.schedule!r}")
    warm = min(1.0, step / config.warmup_steps)
    if config.schedule == "constant" or step <= config.warmup_steps:
        return config.lr * warm
    return config.lr * (steps - step) / max(1, steps - config.warmup_steps)


def _ddpm_loss(model: DiTDefault, scheduler, x0, labels, gen):
    """DDPM epsilon objective (Ho et al. 2020): t ~ U{0..999}, predict the added noise."""
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=gen)  # (B,)
    noise = torch.randn(x0.shape, generator=gen)  # (B, 1, 32, 32)
    x_t = scheduler.add_noise(x0, noise, t)
    pred = model.train_prediction(x_t, t, labels, gen)  # (B, 1, 32, 32)
    return torch.nn.functional.mse_loss(pred, noise)


def _flow_loss(model, x0, labels, gen):
    """Rectified flow (Liu et al. 2022; Esser et al. 2024): x_t = (1-s) x0 + s noise, target v = noise - x0.
    s ~ U(0, 1): sampling with shift 1 spends its steps uniformly in s, so training weights match it
    (logit-normal, SD3's choice, would under-train both ends, which a 50-step Euler sampler visits).
    The model sees the timestep as the sampler calls it (Flux: s; Wan: 1000 s)."""
    from ditcache.sampling import family

    x0 = model.encode(x0)  # Flux (B, N, p*p), video (B, 1, F, H, W)
    sigma = torch.rand(x0.shape[0], generator=gen)  # (B,)
    noise = torch.randn(x0.shape, generator=gen)
    s = sigma.view(-1, *[1] * (x0.dim() - 1))
    x_t = (1 - s) * x0 + s * noise
    timestep = sigma * 1000 * family(model.transformer).timestep_scale
    pred = model.transformer(x_t, timestep=timestep, **model.model_kwargs(labels)).sample
    return torch.nn.functional.mse_loss(pred, noise - x0)


def train_default(
    name: str,
    steps: int = 1350,
    batch_size: int = 128,
    seed: int = 0,
    out_path: str | Path | None = None,
    threads: int = 1,
    log_every: int = 50,
    config: TrainConfig | None = None,
    init_from: str | Path | None = None,
) -> Path:
    """Train default model `name` ('dit' | 'flux') from scratch; returns the weights path.
    out_path None -> the shipped location, weights/<name>.safetensors.
    init_from: a trained default's name or weights file to start from: every tensor whose name and shape
    match is copied (the blocks, embeddings and conditioner), the rest (patch embedding and output
    projection when the patch size differs) keeps its fresh initialisation. Progressive-resolution
    warm start, as SD3 and PixArt train: the 256-token defaults start from the 64-token ones."""
    from diffusers import DDPMScheduler
    from safetensors.torch import save_file

    torch.set_num_threads(threads)
    config = TrainConfig() if config is None else config
    out_path = Path(out_path) if out_path is not None else WEIGHTS_DIR / f"{name}.safetensors"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    json_path = out_path.with_suffix(".json")
    csv_path = out_path.with_name(out_path.stem + "_loss.csv")

    torch.manual_seed(seed)  # parameter init
    model = build(name)
    warm = _warm_start(model, init_from) if init_from is not None else None
    params = [p for m in _modules(model) for p in m.parameters()]
    ema = [copy.deepcopy(m).requires_grad_(False) for m in _modules(model)]
    opt = torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
    for m in _modules(model):
        m.train()
    model.prepare_training()  # e.g. diffusers' DiT: its per-block label dropout off (we drop once per sample)

    images, labels = load_fashion_mnist("train")
    images = torch.from_numpy(images.copy())  # (60000, 28, 28) uint8
    labels = torch.from_numpy(labels)  # (60000,)
    gen = torch.Generator().manual_seed(seed)  # batches, noise, timesteps, label dropout

    meta = {
        "name": name,
        "architecture": spec_dict(model.spec),
        "transformer_kwargs": {k: list(v) if isinstance(v, tuple) else v
                               for k, v in model.spec.transformer_kwargs().items()},
        "null_class": NULL_CLASS,
        "objective": ("ddpm_epsilon_linear_1e-4_0.02_T1000" if model.objective == "ddpm"
                      else "rectified_flow_v_uniform_sigma"),
        "training": {**asdict(config), "steps": steps, "batch_size": batch_size, "seed": seed,
                     "threads": threads, "torch": torch.__version__, "data": "fashion-mnist train 60k",
                     "init_from": warm},
    }
    window, t0 = [], time.perf_counter()
    with csv_path.open("w", newline="") as f:
        csv.writer(f).writerow(["step", "loss", "seconds"])
    bar = tqdm(range(1, steps + 1), desc=f"train {name}", mininterval=5)
    for step in bar:
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=gen)
        x0, y = model.make_batch(images[idx], gen), labels[idx]  # pixels (B, 1, 32, 32) or clips
        drop = torch.rand(batch_size, generator=gen) < config.class_dropout
        y = torch.where(drop, torch.full_like(y, NULL_CLASS), y)
        for group in opt.param_groups:
            group["lr"] = lr_at(config, step, steps)
        loss = _ddpm_loss(model, scheduler, x0, y, gen) if model.objective == "ddpm" else _flow_loss(model, x0, y, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        with torch.no_grad():
            for e, m in zip(ema, _modules(model)):
                for pe, pm in zip(e.parameters(), m.parameters()):
                    pe.lerp_(pm, 1.0 - config.ema_decay)
        window.append(loss.item())
        if not math.isfinite(window[-1]):
            raise FloatingPointError(f"loss is {window[-1]} at step {step}")
        if step % log_every == 0 or step == steps:
            row = (step, sum(window) / len(window), time.perf_counter() - t0)
            window = []
            with csv_path.open("a", newline="") as f:
                csv.writer(f).writerow([row[0], f"{row[1]:.6f}", f"{row[2]:.1f}"])
            bar.set_postfix(loss=f"{row[1]:.4f}")
            _save(model, ema, out_path, json_path, {**meta, "trained_steps": step, "train_seconds": round(row[2], 1),
                                                    "final_loss": round(row[1], 6)}, save_file)
    return out_path


def _warm_start(model, init_from: str | Path) -> dict:
    """Copy every tensor of a trained default whose name and shape match; returns what was copied."""
    from safetensors.torch import load_file

    path = Path(init_from)
    if not path.suffix:
        path = WEIGHTS_DIR / f"{init_from}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"--init-from: {path} does not exist")
    source = load_file(str(path))
    own = state_dict(model)
    copied = [k for k, v in source.items() if k in own and own[k].shape == v.shape]
    if not copied:
        raise ValueError(f"--init-from: no tensor of {path} matches the architecture of {model.name}")
    for prefix, module in trainable_modules(model).items():
        part = {k[len(prefix) + 1:]: source[k].float() for k in copied if k.startswith(prefix + ".")}
        module.load_state_dict(part, strict=False)
    kept = sorted(k for k in own if k not in copied)
    return {"source": path.name, "copied": len(copied), "fresh": kept}


def _modules(model) -> list[torch.nn.Module]:
    return list(trainable_modules(model).values())


def _save(model, ema, out_path: Path, json_path: Path, meta: dict, save_file) -> None:
    """Write the EMA weights (swapped into a copy's slots) and the JSON, each via a temp file + rename."""
    shadow = copy.copy(model)
    for name, module in zip(trainable_modules(model), ema):
        setattr(shadow, name, module)
    tmp = out_path.with_suffix(".tmp")
    save_file(state_dict(shadow), str(tmp), metadata={"name": meta["name"], "steps": str(meta["trained_steps"])})
    tmp.replace(out_path)
    tmp = json_path.with_suffix(".tmpjson")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(json_path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=sorted(MODELS))
    parser.add_argument("--steps", type=int, default=1350)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="weights path (default: shipped location)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--init-from", default=None,
                        help="start from a trained default (name or .safetensors); see train_default")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr,
                        help="peak lr after warm-up (a lower one for a late stage continued with --init-from)")
    parser.add_argument("--schedule", choices=SCHEDULES, default=TrainConfig.schedule,
                        help="after warm-up: constant lr, or linear decay to 0 at the last step (a cooldown)")
    args = parser.parse_args(argv)
    if not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")
    path = train_default(args.model, args.steps, args.batch_size, args.seed, args.out, args.threads, args.log_every,
                         config=TrainConfig(lr=args.lr, schedule=args.schedule), init_from=args.init_from)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
