"""The command line: a thin layer over the Python API. All file output of the CLI happens here."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .cli_common import IMAGE_SUFFIXES, _out_file, _positive, _threads, train_config, user_dir  # noqa: F401


def cmd_generate(args: argparse.Namespace) -> int:
    if args.pipeline:
        from .cli_pipeline import generate

        return generate(args)
    from . import metrics
    from .data import CLASSES
    from .methods import NoCache, describe, parse_method
    from .models import load_default

    _positive(num=args.num, steps=args.steps, threads=args.threads)
    method = _model_artifact(parse_method(args.method), args.method, args.model)
    video = args.model in ("video", "latte")  # clip models: an animated GIF
    out = args.out if args.out is not None else ("clip.gif" if video else "grid.png")
    out_path = _out_file(out, (".gif",) if video else IMAGE_SUFFIXES) if out else None
    _threads(args.threads)
    model = load_default(args.model)
    labels = [i % 10 for i in range(args.num or 16)]
    print(f"ditcache generate: {args.model} ({type(model.transformer).__name__}), {len(labels)} images, "
          f"{args.steps} steps, seed {args.seed}, method {describe(method)}")
    # warm-up (uncached, 2 steps): first-call costs (allocations, kernel choices) land on neither timed run
    model.generate(labels, steps=min(2, args.steps), seed=args.seed, method="none")
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
          f"({ref_run.stats.flops / max(s.flops, 1):.2f}x fewer), planning included: "
          f"{s.plan_flops / 1e9:.3f} G (scores, k-means, verification)")
    from .cli_pipeline import wall_line

    print("  " + wall_line(out_s, ref_s))
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
    if args.compile is not None:
        if args.pipeline or args.context_parallel is not None:
            raise ValueError("--compile times the shipped defaults and model folders; not with --pipeline or "
                             "--context-parallel")
        import torch._dynamo

        known = torch._dynamo.list_backends(exclude_tags=())
        if args.compile not in known:
            raise ValueError(f"--compile {args.compile!r}: torch.compile has no such backend; known: {known}")
    if args.pipeline:
        from .cli_pipeline import bench

        return bench(args)
    if args.context_parallel is not None:
        from .bench.context_parallel import check_launch, run

        check_launch(args.context_parallel)
        _positive(steps=args.steps, threads=args.threads)
        out = None if args.out == "bench-out" else _out_file(args.out, (".md",))
        run(args.model, args.seeds or 4, args.steps, args.threads or 1, str(out) if out else None)
        return 0
    from .bench import BenchConfig, run_bench

    if args.config and not args.random_weights:
        print("ditcache: error: --config builds a model with random weights; confirm with --random-weights",
              file=sys.stderr)
        return 2
    args.seeds = 500 if args.seeds is None else args.seeds
    _positive(seeds=args.seeds, steps=args.steps, batch=args.batch, repeats=args.repeats, threads=args.threads)
    if args.replay and not Path(args.replay).is_file():
        raise FileNotFoundError(f"--replay {args.replay!r}: no such trace file")
    if Path(args.out).is_file():
        raise ValueError(f"--out {args.out!r} is a file; bench writes a folder of reports")
    cfg = BenchConfig(model=args.model, methods=args.methods, peers=args.peers, seeds=args.seeds, steps=args.steps,
                      batch=args.batch, repeats=args.repeats, budget=args.budget, trace=args.trace,
                      bootstrap=args.bootstrap,
                      replay=args.replay, config=args.config, speed_only=args.speed_only, out=args.out,
                      threads=args.threads or min(2, os.cpu_count() or 1), compile=args.compile)
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
    if args.pipeline:
        from .cli_pipeline import train

        return train(args)
    if not args.model:
        raise ValueError("give --model (a shipped default) or --pipeline PATH_OR_ID")
    import json

    from .learn.hyca import train_hyca
    from .learn.l2c import train_l2c
    from .learn.l2p import train_l2p
    from .learn.tokencache import train_tokencache
    from .models import load_default

    cfg = train_config(args)
    out = _out_file(args.out or str(user_dir() / "artifacts" / f"{args.method}_{args.model}.safetensors"),
                    (".safetensors",), overwrite=args.overwrite)
    _threads(args.threads)
    model = load_default(args.model)
    start = time.perf_counter()
    if args.method == "l2p":
        art, summary = train_l2p(model, cfg)
        art.save(out)
        seconds = round(time.perf_counter() - start, 1)
        (out.with_suffix(".json")).write_text(json.dumps({"config": art.config, "seconds": seconds, **summary},
                                                         indent=1))
        losses = summary["losses"]
        held = (f"; held-out {summary['valid_loss']:.4g} vs {summary['valid_loss_reuse']:.4g} for plain reuse"
                if "valid_loss" in summary else "")
        print(f"wrote {out}: loss {losses[-1]:.4g} (identity start {losses[0]:.4g}){held}; {seconds} s")
        print(f"use it with: ditcache generate --model {args.model} --method l2p:artifact={out}")
        return 0
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
DEFAULT_MODELS = ["dit", "flux", "dit256", "flux256", "video", "uvit", "mdt", "latte"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ditcache", description="Feature caching for diffusion transformers.")
    sub = ap.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate with a shipped default model or your pipeline, cached vs uncached")
    g.add_argument("--model", choices=DEFAULT_MODELS, default="dit")
    g.add_argument("--method", default="fora",
                   help="method name or name:key=value,... e.g. 'taylorseer:interval=4,order=2' "
                   "(see `ditcache methods`); with --pipeline also a profile written by `ditcache tune`")
    g.add_argument("--steps", type=int, default=50)
    g.add_argument("--num", type=int, default=None, help="number of images (default 16; labels cycle through the 10 "
                   "classes); with --pipeline, images per prompt (default 1, seeds --seed, --seed + 1, ...)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default=None,
                   help="labelled image grid (default grid.png; video: an animated clip.gif); '' to skip")
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: min(2, cores))")
    g.add_argument("--force", action="store_true", help="apply a profile (--method x.json) measured on another "
                   "transformer, step count or resolution, with a warning")
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

    b = sub.add_parser("bench", help="every method and peer on one model or your pipeline: speed, FLOPs, memory, "
                       "quality")
    b.add_argument("--model", default="dit",
                   help=f"a shipped default ({', '.join(DEFAULT_MODELS)}) or a local diffusers model folder")
    b.add_argument("--methods", default="all", help="comma list of methods, 'all' or 'none'")
    b.add_argument("--peers", default="none", help="comma list of peers, 'all' or 'none' (needs ditcache[peers])")
    b.add_argument("--seeds", type=int, default=None,
                   help="images per setting (default 500: see BENCHMARKS.md; with --pipeline, seeds per prompt: 4)")
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
    b.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="also time each ditcache setting and peer compiled (backend inductor, or the one named), "
                        "against the compiled uncached model, beside the eager columns")
    b.add_argument("--context-parallel", type=int, default=None, metavar="N",
                   help="under `torchrun --nproc-per-node N`: each method on the model sharded by sequence over N "
                        "ranks (diffusers' Ulysses), beside one process and data-parallel seed sharding; --seeds "
                        "(default 4) in one batch, --out a .md file for the table")
    b.set_defaults(fn=cmd_bench)

    tu = sub.add_parser("tune", help="on your pipeline: the fastest setting of each method within a quality "
                        "budget, written as a profile")
    tu.add_argument("--budget", required=True, help="e.g. 'psnr>=30', 'ssim>=0.95,latent_err<=0.05'")
    tu.add_argument("--methods", default="fora,taylorseer,freqca,speca",
                    help="comma list of methods or settings whose speed knob is searched, e.g. "
                    "'fora,taylorseer:order=1,l2c:artifact=router.safetensors'")
    tu.add_argument("--steps", type=int, default=50)
    tu.add_argument("--seeds", type=int, default=4, help="seeds per prompt")
    tu.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds of the chosen settings")
    tu.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the 95%% intervals")
    tu.add_argument("--out", default="profile.json", help="the profile (JSON)")
    tu.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    tu.add_argument("--threads", type=int, default=None)
    tu.set_defaults(fn=cmd_tune)

    tr = sub.add_parser("train", help="train a learned method's artifact (L2C router, TokenCache predictor, "
                        "HyCa calibration, L2P linear predictor)")
    tr.add_argument("method", choices=["l2c", "tokencache", "hyca", "l2p"])
    tr.add_argument("--model", choices=DEFAULT_MODELS, default=None, help="a shipped default (or --pipeline)")
    tr.add_argument("--steps", type=int, default=50, help="sampling steps the artifact is for")
    tr.add_argument("--iters", type=int, default=None, help="optimiser steps (default: L2P 200, others 400)")
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

    from .cli_pipeline import add_arguments

    for p in (g, b, tu, tr):
        add_arguments(p)
    return ap


def cmd_tune(args: argparse.Namespace) -> int:
    from .cli_pipeline import tune

    return tune(args)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (KeyError, ValueError, FileNotFoundError, TypeError, ImportError) as e:
        print(f"ditcache: error: {_message(e)}", file=sys.stderr)
        return 2


def _message(e: Exception) -> str:
    """One line for an error. Registries raise KeyError with a sentence, printed as it is; a bare KeyError (a
    lookup that failed inside, whose text is only the key) and a TypeError are named, so "6" reads as a key."""
    if isinstance(e, KeyError):
        sentence = len(e.args) == 1 and isinstance(e.args[0], str) and " " in e.args[0]
        return e.args[0] if sentence else f"KeyError: {e}"
    return f"TypeError: {e}" if isinstance(e, TypeError) else str(e)


if __name__ == "__main__":
    sys.exit(main())
