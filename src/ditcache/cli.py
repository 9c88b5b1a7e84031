"""The command line: a thin layer over the Python API. All file output of the CLI happens here."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def _threads(n: int | None) -> None:
    import torch

    torch.set_num_threads(n or min(2, os.cpu_count() or 1))


def user_dir() -> Path:
    """Where ditcache writes what it trains when no path is given: never inside the installed package."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ditcache"


def _positive(**values: int | None) -> None:
    """Refuse counts below 1 (before any work starts), naming the flag."""
    for name, v in values.items():
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


def _out_file(path: str, suffixes: tuple[str, ...], overwrite: bool = True) -> Path:
    """Check an output file path before any work: a file (not a folder) with one of ``suffixes``, not an
    existing file unless ``overwrite``; its folder is created."""
    p = Path(path)
    if path.endswith(("/", os.sep)) or p.is_dir():
        raise ValueError(f"--out {path!r} is a directory; give a file path ending in {' or '.join(suffixes)}")
    if p.suffix.lower() not in suffixes:
        raise ValueError(f"--out {path!r}: expected a file ending in {' or '.join(suffixes)}")
    if p.exists() and not overwrite:
        raise ValueError(f"--out {path!r} exists; pass --overwrite to replace it, or name another path")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def cmd_generate(args: argparse.Namespace) -> int:

    from . import metrics
    from .data import CLASSES
    from .methods import NoCache, describe, parse_method
    from .models import load_default

    _positive(num=args.num, steps=args.steps, threads=args.threads)
    method = _model_artifact(parse_method(args.method), args.method, args.model)
    video = args.model == "video"
    out = args.out if args.out is not None else ("clip.gif" if video else "grid.png")
    out_path = _out_file(out, (".gif",) if video else IMAGE_SUFFIXES) if out else None
    _threads(args.threads)
    model = load_default(args.model)
    labels = [i % 10 for i in range(args.num)]
    print(f"ditcache generate: {args.model} ({type(model.transformer).__name__}), {args.num} images, "
          f"{args.steps} steps, seed {args.seed}, method {describe(method)}")

    t = time.perf_counter()
    ref, ref_run = model.generate(labels, steps=args.steps, seed=args.seed, method="none",
                                  progress=True, return_run=True)
    ref_s = time.perf_counter() - t
    if isinstance(method, NoCache):
        print(f"\n  method none: no cache; every site computed at each of {args.steps} steps "
              f"({ref_run.stats.flops / 1e9:.2f} GFLOPs, {ref_s:.2f} s)")
        if out_path is not None:
            _picture(out_path, [("uncached", ref)], [CLASSES[i] for i in labels], video)
            print(f"  wrote {out_path}")
        return 0
    t = time.perf_counter()
    out, run = model.generate(labels, steps=args.steps, seed=args.seed, method=method,
                              progress=True, return_run=True)
    out_s = time.perf_counter() - t

    s = run.stats
    steps = sum(r.branch == 0 for r in s.records)
    counts = {k: v for k, v in s.counts().items() if v}
    print(f"\n  steps: {steps}, of which fully computed {s.full_steps()}; site calls: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" (of {len(s.sites)} sites per step)")
    print(f"  FLOPs: {s.flops / 1e9:.2f} G vs {ref_run.stats.flops / 1e9:.2f} G uncached "
          f"({ref_run.stats.flops / max(s.flops, 1):.2f}x fewer)")
    print(f"  wall:  {out_s:.2f} s vs {ref_s:.2f} s uncached ({ref_s / out_s:.2f}x; one run each, "
          "use benchmarks/ for interleaved medians)")
    print(f"  cache: peak {s.peak_cache_bytes / 2**20:.2f} MiB")
    print(f"  fidelity vs uncached (same seeds): PSNR {metrics.psnr(out, ref):.2f} dB, "
          f"SSIM {metrics.ssim(out, ref):.4f}, max abs error {metrics.max_abs_error(out, ref):.4f}")
    if out_path is not None:
        _picture(out_path, [("uncached", ref), (method.name, out)], [CLASSES[i] for i in labels], video)
        print(f"  wrote {out_path} (top: uncached, bottom: {method.name})")
    return 0


def _model_artifact(method, text: str, model: str):
    """A learned method named without `artifact=` loads the chosen model's shipped artifact (its dataclass
    default is 'dit', which would be refused on any other model after the uncached run); a model that ships
    none is refused here, before any work."""
    from .methods.artifacts import artifact_path, for_model

    chosen = for_model(method, model, text)
    if chosen is not method and not artifact_path(model, method.name).exists():
        raise ValueError(f"no shipped {method.name} artifact for --model {model}: train one with "
                         f"`ditcache train {method.name} --model {model}` and pass {method.name}:artifact=PATH")
    return chosen


def _picture(path: Path, rows: list, captions: list[str], video: bool) -> None:
    """A labelled grid (PNG), or for clips (B, F, 1, H, W) an animated GIF of such grids."""
    from .viz import labelled_animation, labelled_grid, save_gif

    if video:
        save_gif(labelled_animation(rows, captions), path)
    else:
        labelled_grid(rows, captions).save(path)


def cmd_methods(args: argparse.Namespace) -> int:
    from .methods import METHODS, describe

    for name, cls in METHODS.items():
        print(f"{name:12s} {describe(cls(), full=True)}")
        print(f"{'':12s}   valid: {cls.ranges}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from . import coverage

    rows = coverage.listing()
    print(coverage.markdown(rows) if args.markdown else coverage.text(rows))
    return 0


def cmd_train_default(args: argparse.Namespace) -> int:
    from .models.train import SCHEDULES, TrainConfig, train_default

    _positive(steps=args.steps, batch_size=args.batch_size, log_every=args.log_every, threads=args.threads)
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if args.schedule not in SCHEDULES:
        raise ValueError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {args.schedule!r}")
    out = _out_file(args.out or str(user_dir() / "models" / f"{args.model}.safetensors"), (".safetensors",),
                    overwrite=args.overwrite)
    given = {"steps": args.steps, "batch_size": args.batch_size}
    path = train_default(args.model, seed=args.seed, threads=args.threads or 1, log_every=args.log_every,
                         out_path=out, init_from=args.init_from, **{k: v for k, v in given.items() if v is not None},
                         config=TrainConfig(lr=args.lr if args.lr is not None else TrainConfig.lr,
                                            schedule=args.schedule))
    print(f"wrote {path} (+ .json, _loss.csv); load it with "
          f"ditcache.load_default({args.model!r}, weights_dir={str(path.parent)!r})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BenchConfig, run_bench

    if args.config and not args.random_weights:
        print("ditcache: error: --config builds a model with random weights; confirm with --random-weights",
              file=sys.stderr)
        return 2
    _positive(seeds=args.seeds, steps=args.steps, batch=args.batch, repeats=args.repeats, threads=args.threads)
    if args.replay and not Path(args.replay).is_file():
        raise FileNotFoundError(f"--replay {args.replay!r}: no such trace file")
    if Path(args.out).is_file():
        raise ValueError(f"--out {args.out!r} is a file; bench writes a folder of reports")
    cfg = BenchConfig(model=args.model, methods=args.methods, peers=args.peers, seeds=args.seeds, steps=args.steps,
                      batch=args.batch, repeats=args.repeats, budget=args.budget, trace=args.trace,
                      bootstrap=args.bootstrap,
                      replay=args.replay, config=args.config, speed_only=args.speed_only, out=args.out,
                      threads=args.threads or min(2, os.cpu_count() or 1))
    from .bench import method_settings, parse_budget

    method_settings(cfg.methods, "dit")  # fail before hours of work, not after
    if cfg.budget:
        parse_budget(cfg.budget)
    report = run_bench(cfg)
    if report:
        from .bench import report_markdown

        print(report_markdown(report))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import json

    from .learn.hyca import HyCaTrainConfig, train_hyca
    from .learn.l2c import L2CTrainConfig, train_l2c
    from .learn.tokencache import TokenCacheTrainConfig, train_tokencache
    from .models import load_default

    given = {"steps": args.steps, "iters": args.iters, "seed": args.seed}
    if args.method == "l2c":  # configs check their values here, before any model is loaded
        cfg = L2CTrainConfig(**given, **({"lam": args.lam} if args.lam is not None else {}))
    elif args.method == "tokencache":
        extra = {k: v for k, v in (("ratio", args.ratio), ("architecture", args.architecture)) if v is not None}
        cfg = TokenCacheTrainConfig(**given, **extra)
    else:
        extra = {k: v for k, v in (("interval", args.interval), ("clusters", args.clusters)) if v is not None}
        cfg = HyCaTrainConfig(steps=args.steps, seed=args.seed, **extra)
    out = _out_file(args.out or str(user_dir() / "artifacts" / f"{args.method}_{args.model}.safetensors"),
                    (".safetensors",), overwrite=args.overwrite)
    _threads(args.threads)
    model = load_default(args.model)
    start = time.perf_counter()
    if args.method == "hyca":
        art, summary = train_hyca(model, cfg)
        art.save(out)
        seconds = round(time.perf_counter() - start, 1)
        (out.with_suffix(".json")).write_text(json.dumps({"config": art.config, "solvers": summary,
                                                          "seconds": seconds}, indent=1))
        print(f"wrote {out}: share of channels per solver " + ", ".join(f"{k} {v:.1%}" for k, v in summary.items()))
        print(f"use it with: ditcache generate --model {args.model} --method hyca:artifact={out}")
        return 0
    art, losses = (train_l2c if args.method == "l2c" else train_tokencache)(model, cfg)
    art.save(out)
    seconds = round(time.perf_counter() - start, 1)
    (out.with_suffix(".json")).write_text(json.dumps({"config": art.config, "seconds": seconds, "losses": losses},
                                                     indent=1))
    print(f"wrote {out}: final loss {sum(losses[-20:]) / len(losses[-20:]):.4f} "
          f"(first {sum(losses[:20]) / len(losses[:20]):.4f}); loss curve in {out.with_suffix('.json')}")
    print(f"use it with: ditcache generate --model {args.model} --method {args.method}:artifact={out}")
    return 0


# The shipped default models (ditcache.models.MODELS), listed here so that --help needs no torch import.
DEFAULT_MODELS = ["dit", "flux", "dit256", "flux256", "video"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ditcache", description="Feature caching for diffusion transformers.")
    sub = ap.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate with a shipped default model, cached vs uncached")
    g.add_argument("--model", choices=DEFAULT_MODELS, default="dit")
    g.add_argument("--method", default="fora",
                   help="method name or name:key=value,... e.g. 'taylorseer:interval=4,order=2' "
                   "(see `ditcache methods`)")
    g.add_argument("--steps", type=int, default=50)
    g.add_argument("--num", type=int, default=16, help="number of images (labels cycle through the 10 classes)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default=None,
                   help="labelled image grid (default grid.png; video: an animated clip.gif); '' to skip")
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: min(2, cores))")
    g.set_defaults(fn=cmd_generate)

    m = sub.add_parser("methods", help="list the methods and their default settings")
    m.set_defaults(fn=cmd_methods)

    mo = sub.add_parser("models", help="which diffusers transformer classes ditcache maps, their sites, token paths "
                        "and methods (and why the others are not mapped)")
    mo.add_argument("--markdown", action="store_true", help="print the README's tables")
    mo.set_defaults(fn=cmd_models)

    t = sub.add_parser("train-default", help="retrain a shipped default model (reproduces the weights)")
    t.add_argument("--model", choices=DEFAULT_MODELS, required=True)
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None,
                   help="output .safetensors path (default: ~/.cache/ditcache/models/<model>.safetensors)")
    t.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    t.add_argument("--init-from", default=None,
                   help="start from a trained default (name or .safetensors): the 256-token ones start from the 64")
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--lr", type=float, default=None,
                   help="peak lr after warm-up (default 1e-3; a lower one for a late stage continued with --init-from)")
    t.add_argument("--schedule", default="constant",
                   help="after warm-up: constant lr, or linear decay to 0 at the last step (a final stage's cooldown)")
    t.set_defaults(fn=cmd_train_default)

    b = sub.add_parser("bench", help="every method and peer on one model: speed, FLOPs, memory, quality")
    b.add_argument("--model", default="dit",
                   help=f"a shipped default ({', '.join(DEFAULT_MODELS)}) or a local diffusers model folder")
    b.add_argument("--methods", default="all", help="comma list of methods, 'all' or 'none'")
    b.add_argument("--peers", default="none", help="comma list of peers, 'all' or 'none' (needs ditcache[peers])")
    b.add_argument("--seeds", type=int, default=500, help="images per setting (500: see BENCHMARKS.md)")
    b.add_argument("--steps", type=int, default=50)
    b.add_argument("--batch", type=int, default=16, help="images per model call batch")
    b.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds")
    b.add_argument("--budget", default=None,
                   help="e.g. 'psnr>=30', 'fd<=1.05x' or both joined by a comma: fastest setting per method")
    b.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the 95%% intervals")
    b.add_argument("--trace", action="store_true", help="save each ditcache run's per-step, per-site plans")
    b.add_argument("--replay", default=None, help="benchmark exactly the run recorded in this trace file")
    b.add_argument("--config", default=None, help="a zoo architecture (e.g. dit-xl-2, flux-dev) instead of --model")
    b.add_argument("--random-weights", action="store_true", help="required with --config")
    b.add_argument("--speed-only", action="store_true", help="no quality columns")
    b.add_argument("--out", default="bench-out")
    b.add_argument("--threads", type=int, default=None)
    b.set_defaults(fn=cmd_bench)

    tr = sub.add_parser("train", help="train a learned method's artifact (L2C router, TokenCache predictor, "
                        "HyCa calibration)")
    tr.add_argument("method", choices=["l2c", "tokencache", "hyca"])
    tr.add_argument("--model", choices=DEFAULT_MODELS, required=True)
    tr.add_argument("--steps", type=int, default=50, help="sampling steps the artifact is for")
    tr.add_argument("--iters", type=int, default=400)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--lam", type=float, default=None, help="L2C: weight of mean(beta)")
    tr.add_argument("--ratio", type=float, default=None, help="TokenCache: target share of recomputed tokens")
    tr.add_argument("--architecture", choices=["table", "factored"], default=None, help="TokenCache predictor")
    tr.add_argument("--interval", type=int, default=None, help="HyCa: the full-step interval to calibrate for")
    tr.add_argument("--clusters", type=int, default=None, help="HyCa: channel clusters per site")
    tr.add_argument("--out", default=None,
                    help="output .safetensors path (default: ~/.cache/ditcache/artifacts/<method>_<model>.safetensors)")
    tr.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    tr.add_argument("--threads", type=int, default=None)
    tr.set_defaults(fn=cmd_train)
    return ap


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (KeyError, ValueError, FileNotFoundError, TypeError, ImportError) as e:
        print(f"ditcache: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
