"""Regenerates the model cards' figures and numbers for the default models and the classifier.

    python -m ditcache.models.card [--models dit flux] [--per-class 100] [--threads 2]

Writes into models/weights/: <name>_loss.png, <name>_samples.png (10x10 grid, one row per class),
<name>_eval.json and MODEL_CARD_<name>.md; MODEL_CARD_classifier.md. Uses matplotlib for the
loss curve and PIL for image grids. All sampling is uncached (method=None).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ditcache.data import CLASS_NAMES
from ditcache.metrics import class_accuracy, frechet_distance_from_stats, mean_cov
from ditcache.models.defaults import WEIGHTS_DIR, DefaultModel, load_default


def generate_per_class(model: DefaultModel, per_class: int, steps: int, guidance_scale: float | None,
                       seed: int, chunk: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """per_class samples of each class (labels 0,1,..,9,0,1,..), in chunks with seeds seed, seed+1, ..."""
    labels = torch.arange(10).repeat(per_class)  # (10 * per_class,)
    images = [model.generate(part, steps=steps, seed=seed + i, guidance_scale=guidance_scale)
              for i, part in enumerate(labels.split(chunk))]
    return torch.cat(images), labels  # (N, 1, 28, 28), (N,)


def evaluate(model: DefaultModel, classifier, per_class: int = 100, steps: int = 50,
             guidance_scale: float | None = None, seed: int = 0) -> dict:
    """FD in classifier space vs the 10k test images and class accuracy of uncached CFG samples."""
    t0 = time.perf_counter()
    images, labels = generate_per_class(model, per_class, steps, guidance_scale, seed)
    seconds = time.perf_counter() - t0
    feats, logits = classifier._run(images, 500)
    mu_t, cov_t = classifier.reference_stats("test")
    return {
        "samples": int(labels.numel()), "steps": steps,
        "guidance_scale": model.default_guidance_scale if guidance_scale is None else guidance_scale,
        "fd_model_vs_test": frechet_distance_from_stats(*mean_cov(feats), mu_t, cov_t),
        "class_accuracy": class_accuracy(logits, labels),
        "per_class_accuracy": [class_accuracy(logits[labels == c], labels[labels == c]) for c in range(10)],
        "generation_seconds": round(seconds, 1),
    }


def sweep_guidance(model: DefaultModel, classifier, scales=(1.5, 3.0, 5.0), per_class: int = 20,
                   steps: int = 25) -> list[dict]:
    """Small CFG-scale sweep used to pick default_guidance_scale (few samples, so FD is biased up)."""
    return [{k: v for k, v in evaluate(model, classifier, per_class, steps, g, seed=1000).items()
             if k in ("guidance_scale", "fd_model_vs_test", "class_accuracy", "samples", "steps")}
            for g in scales]


def sanity_fds(classifier, n_small: int = 1000, seed: int = 0) -> dict:
    """Reference points for FD in classifier space vs the 10k test images: real train images (10k,
    and n_small, the sample count used for the models: FD is biased upward for small N) and
    Gaussian noise images (N(0, 1) pixels clamped to [-1, 1])."""
    from ditcache.data import load_fashion_mnist
    from ditcache.evaluator import to_unit

    mu_t, cov_t = classifier.reference_stats("test")
    train, _ = load_fashion_mnist("train")
    small = classifier.features(to_unit(torch.from_numpy(train[-n_small:].copy())))  # disjoint from train10k
    noise = torch.randn(n_small, 1, 28, 28, generator=torch.Generator().manual_seed(seed)).clamp(-1, 1)
    return {
        "fd_train10k_vs_test": frechet_distance_from_stats(*classifier.reference_stats("train10k"), mu_t, cov_t),
        f"fd_train{n_small}_vs_test": frechet_distance_from_stats(*mean_cov(small), mu_t, cov_t),
        f"fd_noise{n_small}_vs_test": frechet_distance_from_stats(*mean_cov(classifier.features(noise)), mu_t, cov_t),
    }


def time_generation(model: DefaultModel, batch: int = 16, steps: int = 50, repeats: int = 3) -> float:
    """Median wall-clock seconds of one uncached CFG generation (2*batch per forward)."""
    labels = torch.arange(batch) % 10
    model.generate(labels, steps=2)  # warm-up
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        model.generate(labels, steps=steps, seed=r)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def save_grid(images: torch.Tensor, path: Path, nrow: int = 10, scale: int = 2) -> None:
    """(N, 1, 28, 28) in [-1, 1] -> PNG grid, nrow images per row, 2 px gaps, upscaled `scale`x."""
    from PIL import Image

    n = images.shape[0]
    rows = (n + nrow - 1) // nrow
    canvas = np.full((rows * 30 + 2, nrow * 30 + 2), 128, dtype=np.uint8)
    pix = ((images[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()  # (N, 28, 28)
    for i in range(n):
        r, c = divmod(i, nrow)
        canvas[2 + r * 30:2 + r * 30 + 28, 2 + c * 30:2 + c * 30 + 28] = pix[i]
    Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST).save(path)


def plot_loss(csv_path: Path, png_path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.plot(steps, loss)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (mean per log interval)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


def _sweep_rows(name: str) -> list[dict]:
    """The rows `--sweep` wrote for this model (<name>_sweep.json), or none if it was not run."""
    path = WEIGHTS_DIR / f"{name}_sweep.json"
    return json.loads(path.read_text()) if path.is_file() else []


def _sweep_table(name: str) -> str:
    rows = _sweep_rows(name)
    if not rows:
        return ""
    lines = "\n".join(f"| {r['guidance_scale']} | {r['fd_model_vs_test']:.3f} | {r['class_accuracy']:.3f} |"
                      for r in rows)
    n, steps = rows[0]["samples"], rows[0]["steps"]
    return (f"\nCFG scale chosen from a small sweep ({n} samples, {steps} steps, seed 1000; FD at this sample count is "
            f"biased upward, compare rows only):\n\n| CFG scale | FD vs test | class accuracy |\n| --- | --- | --- |\n"
            f"{lines}\n")


def _video_sweep_table(name: str) -> str:
    rows = _sweep_rows(name)
    if not rows:
        return ""
    lines = "\n".join(f"| {r['guidance_scale']} | {r['per_frame_accuracy']:.3f} | {r['fd_frames_vs_test']:.2f} | "
                      f"{r['consistency']:.3f} |" for r in rows)
    command = f"python -m ditcache.models.card --models {name} --sweep"
    scales = tuple(r["guidance_scale"] for r in rows)
    if scales != VIDEO_SWEEP_SCALES or rows[0]["clips"] != 10 * VIDEO_SWEEP_PER_CLASS:
        command += f" --sweep-per-class {rows[0]['clips'] // 10} --scales {' '.join(f'{g:g}' for g in scales)}"
    return (f"\nCFG scale checked by a small sweep on the weights after {rows[0]['trained_steps']} training steps "
            f"({rows[0]['clips']} clips per scale, "
            f"{rows[0]['steps']} steps, seeds from 1000, the same clips' noise at every scale; frame FD at this "
            f"count is biased upward, compare rows only; `{command}`):"
            "\n\n| CFG scale | per-frame accuracy | frame FD vs test | label consistency |\n| --- | --- | --- | --- |\n"
            f"{lines}\n")


# The models written here from their papers: what each card says first ({p}: patch side, {n}: patch tokens).
PAPER_MODELS = {
    "uvit": ("U-ViT (Bao et al. 2023; `ditcache.models.uvit.UViT`, a plain torch module mapped with "
             "`register_block`): {p}x{p} patches -> {n} tokens, with the timestep and the class label prepended as "
             "two more tokens; pre-LN blocks without AdaLN; long skips (concatenate, then a linear layer) from each "
             "in-block to its out-block; a 3x3 convolution after unpatchify."),
    "mdt": ("MDT (Gao et al. 2023; `ditcache.models.mdt.MDT`, a plain torch module mapped with `register_block`): "
            "{p}x{p} patches -> {n} tokens; adaLN-Zero DiT blocks split into an encoder and a decoder, with a "
            "side-interpolater between them that is run in training only: half of each batch is trained with "
            "30% of the tokens masked before the encoder (MDT's masked objective), half without."),
}


def _write_eval(out: Path, name: str, ev: dict) -> None:
    """<name>_eval.json: what a card's numbers come from (``--text-only`` rewrites the card from it)."""
    (out / f"{name}_eval.json").write_text(json.dumps(ev, indent=2) + "\n")


def _busy(ev: dict) -> str:
    """What a card says after a timing taken beside other jobs (``--busy``, recorded in the eval JSON)."""
    return " (timed beside other jobs: not a speed figure)" if ev.get("timed_busy") else ""


def _card(name: str, meta: dict, ev: dict, sanity: dict, gen_seconds: float) -> str:
    tr = meta["training"]
    threads = ev.get("threads", torch.get_num_threads())  # of the timed generation (older evals: not recorded)
    arch = "\n".join(f"| `{k}` | {v} |" for k, v in meta["transformer_kwargs"].items())
    per_class = ", ".join(f"{a:.2f}" for a in ev["per_class_accuracy"])
    arch_ = meta["architecture"]
    if name in PAPER_MODELS:
        p = arch_["patch_size"]
        what = PAPER_MODELS[name].format(p=p, n=(32 // p) ** 2) + (
            " In pixel space: 28x28 images scaled to [-1, 1], padded with -1 to 32x32. DDPM epsilon objective, "
            "linear betas 1e-4..0.02 over 1000 timesteps; sampled with DDIM (eta 0). Label 10 is the null class "
            "for classifier-free guidance (10% label dropout in training, applied once per sample).")
        cond = "`class_labels` (B,) int64; unconditional = 10"
    elif name.startswith("dit"):
        p = arch_["patch_size"]
        n = (32 // p) ** 2
        what = ("`diffusers.DiTTransformer2DModel` in pixel space: 28x28 images scaled to [-1, 1], padded with -1 "
                f"to 32x32, {p}x{p} patches -> {n} tokens. DDPM epsilon objective, linear betas 1e-4..0.02 over 1000 "
                "timesteps; sampled with DDIM (eta 0). Class labels 0..9 enter through DiT's adaLN-Zero label "
                "embedding; label 10 is the null class for classifier-free guidance (10% label dropout in training, "
                "applied once per sample; diffusers' own per-block dropout is switched off during training).")
        cond = "`class_labels` (B,) int64; unconditional = 10"
    else:
        p = arch_["patch"]
        n = (32 // p) ** 2
        what = ("`diffusers.FluxTransformer2DModel` (double-stream then single-stream blocks, RoPE over (0, row, col) "
                f"ids): the 32x32 image is packed into {p}x{p} patches -> {n} tokens of {p * p} channels. Rectified "
                "flow: x_t = (1 - s) x0 + s noise, target v = noise - x0, s ~ U(0, 1), model called with timestep = s. "
                "Sampled with FlowMatchEulerDiscreteScheduler (shift 1). The class enters as a learned 4-token "
                "\"text\" sequence (nn.Embedding(11, 4*64)) and a learned pooled vector (nn.Embedding(11, 64)); "
                "id 10 = null class (10% dropout). No guidance embedding.")
        cond = (f"`encoder_hidden_states` (B, 4, 64), `pooled_projections` (B, 64), `img_ids` ({n}, 3), "
                "`txt_ids` (4, 3) zeros")
    init = tr.get("init_from")
    stages = meta.get("stages")
    if init and init["fresh"]:  # warm-started from a smaller default (progressive resolution), not its own stage
        what += (f" Warm-started from `{init['source']}` ({init['copied']} tensors whose name and shape match: the "
                 f"blocks, embeddings and conditioner); freshly initialised: {', '.join(init['fresh'])} "
                 "(progressive resolution, as SD3 and PixArt train).")
    if stages:  # one command cannot reproduce a run continued from its own saved weights: the stages can
        command = "the stage commands under \"Data and training\", in order, each from the previous one's weights"
    else:
        command = "`" + (f"ditcache train-default --model {name} --steps {tr['steps']} --batch-size {tr['batch_size']} "
                         f"--seed {tr['seed']} --threads {tr['threads']}"
                         + (f" --init-from {init['source'].split('.')[0]}" if init else "")
                         + (f" --lr {tr['lr']}" if tr["lr"] != 1e-3 else "")) + "`"  # 1e-3: TrainConfig's default
    decay = "then decaying linearly to 0" if tr.get("schedule") == "linear" else "then constant"
    trained = (f"Trained {meta['trained_steps']} steps in {meta['train_seconds'] / 60:.1f} min; final train loss "
               f"{meta['final_loss']:.4f}\n(mean of the last log interval).")
    if stages:
        steps, minutes = _training_totals(meta)
        trained = (f"Trained in {len(stages)} stages, {steps} steps and {minutes:.1f} min in all; each continued "
                   "from the previous stage's saved EMA weights with a fresh optimizer and lr warm-up (`stages` in the "
                   "JSON; the settings above are the last stage's):\n\n" + _stage_list(stages)
                   + f"\n\nFinal train loss {meta['final_loss']:.4f} (mean of the last log interval).")
    return f"""# Default model `{name}`

{what}

Load with `ditcache.load_default("{name}")`; weights `{name}.safetensors` (EMA), config `{name}.json`.
Conditioning kwargs: {cond}. Reproduce the weights with {command}.

## Architecture (diffusers kwargs)

| kwarg | value |
| --- | --- |
{arch}

## Data and training

Fashion-MNIST train split (60k), no augmentation. AdamW lr {tr['lr']} (linear warmup {tr['warmup_steps']} steps,
{decay}), betas {tr['betas']}, weight decay {tr['weight_decay']}, grad-norm clip {tr['grad_clip']},
EMA {tr['ema_decay']}, class dropout {tr['class_dropout']}, batch {tr['batch_size']}, seed {tr['seed']}, fp32 on CPU
with {tr['threads']} thread
(two trainings ran side by side on a 2-core machine).
{trained}

![loss curve]({name}_loss.png)

## Samples

Uncached, {ev['steps']} steps, CFG scale {ev['guidance_scale']}, one row per class
({', '.join(CLASS_NAMES)}), seed 0:

![samples]({name}_samples.png)

## Evaluation (uncached)

{ev['samples']} samples ({ev['samples'] // 10} per class), {ev['steps']} steps, CFG scale {ev['guidance_scale']}.
"FD" is the Fréchet distance in the 128-d feature space of our own Fashion-MNIST classifier
(`ditcache.evaluator`), **not** FID; compare only numbers computed with the same classifier and sample count.

| measure | value |
| --- | --- |
| FD in classifier space, model ({ev['samples']}) vs test (10k) | {ev['fd_model_vs_test']:.3f} |
| FD, real train (1000) vs test (10k): floor at this sample count | {sanity['fd_train1000_vs_test']:.3f} |
| FD, real train (10k) vs test (10k) | {sanity['fd_train10k_vs_test']:.3f} |
| FD, Gaussian noise images (1000) vs test (10k) | {sanity['fd_noise1000_vs_test']:.3f} |
| class accuracy (classifier agrees with requested class) | {ev['class_accuracy']:.3f} |
| per-class accuracy, classes 0..9 | {per_class} |
| one 16-image generation, 50 steps, CFG, {threads} thread(s), median of 3 | {gen_seconds:.2f} s{_busy(ev)} |
{_sweep_table(name)}
Regenerate with `python -m ditcache.models.card --models {name} --per-class {ev['samples'] // 10}`.
"""


def _classifier_card(meta: dict) -> str:
    tr = meta["training"]
    return f"""# Evaluator classifier

`ditcache.evaluator.FashionCNN`: three conv(3x3)+BatchNorm+ReLU+maxpool stages (32, 64, 128 channels;
28 -> 14 -> 7 -> 3), a 128-wide ReLU layer (the **features** used for FD in classifier space) and a
linear head over 10 classes (dropout 0.3 before it in training). Input (B, 1, 28, 28) in [-1, 1].

Trained on the 60k Fashion-MNIST training images, no augmentation, {tr['epochs']} epochs, batch
{tr['batch_size']}, AdamW with one-cycle lr (peak {tr['lr']}), weight decay {tr['weight_decay']}, seed {tr['seed']},
{tr['threads']} CPU thread, {tr['seconds'] / 60:.1f} min.

**Test accuracy: {meta['test_accuracy']:.4f}** on the 10k test images.

`fmnist_test_stats.safetensors` holds the mean (128,) and covariance (128, 128), float64, of the
test images' features, tagged with the sha256 of `classifier.safetensors`; loading it with other
classifier weights raises. Retrain with `python -m ditcache.evaluator`.
"""


def generate_clips(model, per_class: int, steps: int, guidance_scale: float | None,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """per_class clips of each class (labels 0,1,..,9,0,..) in chunks of 50 with seeds seed, seed+1, ...;
    returns the clips (N, F, 1, H, W), their labels (N,) and the seconds generation took."""
    labels = torch.arange(10).repeat(per_class)
    t0 = time.perf_counter()
    clips = torch.cat([model.generate(part, steps=steps, seed=seed + i, guidance_scale=guidance_scale)
                       for i, part in enumerate(labels.split(50))])
    return clips, labels, time.perf_counter() - t0


VIDEO_SWEEP_SCALES = (1.5, 2.0, 3.0, 5.0)  # the video default's sweep
VIDEO_SWEEP_PER_CLASS = 3                  # clips per class and scale: 30 clips, a few minutes per scale


def sweep_video_guidance(model, scales=VIDEO_SWEEP_SCALES, per_class: int = VIDEO_SWEEP_PER_CLASS,
                         steps: int = 50) -> list[dict]:
    """The video default's CFG-scale sweep: per-frame accuracy, frame FD (few clips, so biased up) and label
    consistency at each scale, on the same seeds (1000, ...) for every scale and none of the card's."""
    from ditcache.quality import Quality

    trained, _ = _training_totals(json.loads((WEIGHTS_DIR / f"{model.name}.json").read_text()))  # which weights
    rows = []
    for g in scales:
        clips, labels, _ = generate_clips(model, per_class, steps, g, seed=1000)
        row = Quality(clips, labels, bootstrap=0).reference_row()
        rows.append({"guidance_scale": g, "clips": int(labels.numel()), "steps": steps, "trained_steps": trained,
                     "per_frame_accuracy": row["accuracy"], "fd_frames_vs_test": row["fd"],
                     "consistency": row["consistency"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


VIDEO_DEFAULTS = ("video", "latte")  # the defaults whose samples are clips


def _video_intro(name: str, spec) -> str:
    """What a video card says first: the clips (shared by both video defaults), then the model and objective."""
    tokens = f"{spec.frames} x {(spec.canvas // spec.patch) ** 2} = {spec.frames * (spec.canvas // spec.patch) ** 2}"
    clips = (f"moving Fashion-MNIST: each clip is {spec.frames} frames of {spec.canvas}x{spec.canvas} pixels in which "
             f"one Fashion-MNIST training item ({spec.item}x{spec.item}, its own size) moves in a straight line from a "
             f"random start to a random end position (`ditcache.data.moving_clips`). 1x{spec.patch}x{spec.patch} "
             f"patches -> {tokens} tokens.")
    if name == "latte":
        return (f"`diffusers.LatteTransformer3DModel` (Latte; spatial and temporal blocks alternating, the shape of "
                f"OpenSora's STDiT that ToCa's video results are on) on {clips} {spec.num_layers} spatial blocks "
                f"(self-attention over a frame's tokens, cross-attention to the class \"text\", MLP) alternate with "
                f"{spec.num_layers} temporal blocks (self-attention over one position's {spec.frames} frames, MLP). "
                "DDPM epsilon objective (linear betas 1e-4..0.02 over 1000 timesteps, Latte's and DiT's), sampled "
                f"with DDIM (eta 0); the class enters as a learned {spec.text_tokens}-token \"text\" sequence "
                "through Latte's caption projection; id 10 = null class (10% dropout).")
    return (f"`diffusers.WanTransformer3DModel` on {clips} Rectified flow as the Flux default (the model sees "
            f"timestep = 1000 s, Wan's scale); the class enters as a learned {spec.text_tokens}-token \"text\" "
            "sequence for Wan's cross-attention; id 10 = null class (10% dropout). Sampled with "
            "FlowMatchEulerDiscreteScheduler (shift 1). Wan was chosen over HunyuanVideo: its blocks are mapped with a "
            "token path for the MLP and cross-attention, it needs no text encoder of its own (HunyuanVideo's forward "
            "runs a token refiner over the text at every call), and at this width a Wan block costs less (one "
            "stream).")


def video_card(model, per_class: int, steps: int, out: Path, busy: bool = False) -> dict:
    """The video default's card: a sample strip and GIF, per-frame accuracy and FD in classifier space, label
    consistency across each clip's frames, and the same measures on real moving clips for reference."""
    from ditcache.data import load_fashion_mnist, moving_clips
    from ditcache.quality import Quality
    from ditcache.viz import labelled_animation, labelled_grid, save_gif

    name, spec, meta = model.name, model.spec, json.loads((out / f"{model.name}.json").read_text())
    plot_loss(out / f"{name}_loss.csv", out / f"{name}_loss.png", f"{name}: training loss")
    clips, labels, seconds = generate_clips(model, per_class, steps, None, seed=0)
    strip = clips[:10]                                                        # one clip per class
    labelled_grid([(f"frame {f}", strip[:, f]) for f in range(spec.frames)], list(CLASS_NAMES)).save(
        out / f"{name}_samples.png")
    save_gif(labelled_animation([("generated", strip)], list(CLASS_NAMES)), out / f"{name}_samples.gif")
    row = Quality(clips, labels, bootstrap=0).reference_row()
    images, test_labels = load_fashion_mnist("test")
    real = moving_clips(torch.from_numpy(images[:labels.numel()].copy()), spec.frames, spec.canvas, spec.item,
                        torch.Generator().manual_seed(0)).transpose(1, 2)    # (N, F, 1, H, W)
    qr = Quality(real, torch.from_numpy(test_labels[:labels.numel()].copy()), bootstrap=0)
    real_row = qr.reference_row()
    ev = {"clips": int(labels.numel()), "steps": steps, "guidance_scale": model.default_guidance_scale,
          "per_frame_accuracy": row["accuracy"], "fd_frames_vs_test": row["fd"], "consistency": row["consistency"],
          "real_per_frame_accuracy": real_row["accuracy"], "real_fd_frames_vs_test": qr.ref_fd,
          "real_consistency": real_row["consistency"], "generation_seconds": round(seconds, 1),
          "timed_busy": busy}
    _write_eval(out, name, ev)
    tr = meta["training"]
    arch = "\n".join(f"| `{k}` | {v} |" for k, v in meta["transformer_kwargs"].items())
    init = tr.get("init_from")
    resumed = (f" The run was continued from its own saved EMA weights (`--init-from {init['source']}`, a fresh "
               "optimizer), as recorded in the JSON." if init else "")
    trained, minutes = _training_totals(meta)  # (steps: the sampling steps)
    if meta.get("stages"):  # a run stopped and continued: each stage's command, steps run and time
        resumed = (f" Trained in {len(meta['stages'])} stages, each continued from the previous stage's "
                   "saved EMA weights with a fresh optimizer and lr warm-up, most stopped where their time ran out "
                   "(`stages` in the JSON; the settings above are the last stage's):\n\n"
                   + _stage_list(meta["stages"]))
    (out / f"MODEL_CARD_{name}.md").write_text(f"""# Default model `{name}`

{_video_intro(name, spec)}

Load with `ditcache.load_default("{name}")`; `ditcache generate --model {name} --method ...` writes an animated GIF.

## Architecture (diffusers kwargs)

| kwarg | value |
| --- | --- |
{arch}

## Training

Fashion-MNIST train split, clips made on the fly from seeded draws. AdamW lr {tr['lr']} (warmup
{tr['warmup_steps']} steps; after it, per stage: {tr.get('schedule', 'constant')}),
EMA {tr['ema_decay']}, batch {tr['batch_size']}, seed {tr['seed']}, fp32 on CPU,
{tr['threads']} thread beside other jobs. {trained} steps in {minutes:.1f} min in all;
final train loss {meta['final_loss']:.4f}.{resumed}

![loss curve]({name}_loss.png)

## Samples

One clip per class (uncached, {steps} steps, CFG {model.default_guidance_scale}, seed 0), frames top to bottom
([GIF]({name}_samples.gif)):

![samples]({name}_samples.png)

## Evaluation (uncached, {ev['clips']} clips, {per_class} per class)

Every frame's item is cropped at its centre of brightness and judged by the shipped classifier
(`ditcache.evaluator.frames_to_items`). Real moving clips made from the test images are the reference.

| measure | generated | real clips |
| --- | --- | --- |
| per-frame class accuracy | {ev['per_frame_accuracy']:.3f} | {ev['real_per_frame_accuracy']:.3f} |
| FD in classifier space, frames vs the 10k test images | {ev['fd_frames_vs_test']:.2f} | \
{ev['real_fd_frames_vs_test']:.2f} |
| label consistency (share of a clip's frames given its majority label) | {ev['consistency']:.3f} | \
{ev['real_consistency']:.3f} |
| generation of {ev['clips']} clips, {steps} steps | {ev['generation_seconds']:.0f} s{_busy(ev)} | |

{_video_sweep_table(name)}
Regenerate with `python -m ditcache.models.card --models {name} --per-class {per_class}`.
""")
    return ev


def _training_totals(meta: dict) -> tuple[int, float]:
    """Steps and minutes a default was trained: every stage's for one trained in stages (the JSON's
    trained_steps and train_seconds are the last stage's), else the one run's."""
    stages = meta.get("stages") or [meta]
    return sum(st["trained_steps"] for st in stages), sum(st["train_seconds"] for st in stages) / 60


def _stage_list(stages: list[dict]) -> str:
    """A numbered markdown list: each stage's command, how far it ran, its time and final loss."""
    return "\n".join(f"{i + 1}. `{st['command']}`: {_stage_extent(st)}, {st['train_seconds'] / 60:.1f} min, "
                     f"loss {st['final_loss']:.4f}" for i, st in enumerate(stages))


def _stage_extent(stage: dict) -> str:
    """'ran 800 steps' for a stage that reached its --steps (a linear schedule's cooldown must), else
    'stopped after N steps'."""
    asked = stage["command"].split("--steps ")[1].split()[0] if "--steps " in stage["command"] else None
    done = stage["trained_steps"]
    extent = f"ran {done} steps" if asked == str(done) else f"stopped after {done} steps"
    return extent + (" (lr decaying linearly to 0)" if stage.get("schedule") == "linear" else "")


def main(argv: list[str] | None = None) -> None:
    from ditcache.evaluator import load_classifier

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["dit", "flux"],
                        choices=["dit", "flux", "dit256", "flux256", "video", "uvit", "mdt", "latte"])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--guidance-scale", type=float, default=None)
    parser.add_argument("--sweep", action="store_true", help="only run the CFG-scale sweep, write <name>_sweep.json")
    parser.add_argument("--scales", type=float, nargs="+", default=None,
                        help="the sweep's CFG scales (default: 1.5 3 5 for images, 1.5 2 3 5 for clips)")
    parser.add_argument("--sweep-per-class", type=int, default=None,
                        help="the sweep's samples per class and scale (default: 20 for images, 3 for clips)")
    parser.add_argument("--busy", action="store_true",
                        help="the machine runs other jobs: the card marks its timing as no speed figure (with "
                             "--text-only: marks the saved timing so)")
    parser.add_argument("--text-only", action="store_true",
                        help="rewrite the image models' cards from their saved <name>_eval.json (no sampling)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = WEIGHTS_DIR
    if args.text_only:  # the card's wording changed, not the model: nothing is sampled or timed again
        for name in args.models:
            if name in VIDEO_DEFAULTS:
                raise SystemExit("--text-only covers the image models; a video card is written by sampling")
            meta, ev = (json.loads((out / f"{name}{suffix}.json").read_text()) for suffix in ("", "_eval"))
            sanity = {k: v for k, v in ev.items() if k.startswith("fd_") and k != "fd_model_vs_test"}
            if args.busy:  # the saved timing was taken beside other jobs: say so from now on
                ev["timed_busy"] = True
                _write_eval(out, name, ev)
            (out / f"MODEL_CARD_{name}.md").write_text(
                _card(name, meta, ev, sanity, ev["generation_seconds_16x50_cfg"]))
            print(f"wrote {out / f'MODEL_CARD_{name}.md'}")
        return
    classifier = load_classifier()
    if args.sweep:
        for name in args.models:
            model = load_default(name)
            options = {k: v for k, v in (("scales", tuple(args.scales or ())), ("per_class", args.sweep_per_class))
                       if v}
            rows = (sweep_video_guidance(model, **options) if name in VIDEO_DEFAULTS
                    else sweep_guidance(model, classifier, **options))
            (out / f"{name}_sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
            print(name, json.dumps(rows))
        return
    clf_meta = json.loads((out / "classifier.json").read_text())
    (out / "MODEL_CARD_classifier.md").write_text(_classifier_card(clf_meta))
    sanity = sanity_fds(classifier)
    print(json.dumps(sanity, indent=1))
    for name in args.models:
        model = load_default(name)
        if name in VIDEO_DEFAULTS:
            print(name, json.dumps(video_card(model, args.per_class, args.steps, out, args.busy)))
            continue
        meta = json.loads((out / f"{name}.json").read_text())
        plot_loss(out / f"{name}_loss.csv", out / f"{name}_loss.png", f"{name}: training loss")
        grid_labels = torch.arange(10).repeat_interleave(10)  # one row per class
        save_grid(model.generate(grid_labels, steps=args.steps, seed=0, guidance_scale=args.guidance_scale),
                  out / f"{name}_samples.png")
        gen_seconds = time_generation(model, steps=args.steps)
        ev = evaluate(model, classifier, args.per_class, args.steps, args.guidance_scale)
        ev.update(sanity, generation_seconds_16x50_cfg=gen_seconds, threads=torch.get_num_threads(),
                  timed_busy=args.busy)
        _write_eval(out, name, ev)
        (out / f"MODEL_CARD_{name}.md").write_text(_card(name, meta, ev, sanity, gen_seconds))
        print(name, json.dumps(ev))


if __name__ == "__main__":
    main()
