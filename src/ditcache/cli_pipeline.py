"""The command line on a user's own pipeline (``--pipeline PATH_OR_ID``): generate, bench, tune and train.

Every check that needs no weights runs first: the prompts, the pipeline class (from ``model_index.json``) and
what its ``__call__`` takes, the method, budget and output paths. Only then is the pipeline loaded. File output
happens here, as in ``cli.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from .cli_common import IMAGE_SUFFIXES, _out_file, _positive, _threads, train_config, user_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The --pipeline options of generate, bench, tune and train."""
    g = p.add_argument_group("your own diffusers pipeline")
    g.add_argument("--pipeline", default=None, metavar="PATH_OR_ID",
                   help="a folder written by save_pretrained, or a hub id (DiffusionPipeline.from_pretrained)")
    g.add_argument("--prompt", action="append", default=None, help="a prompt (repeatable)")
    g.add_argument("--prompts", default=None, metavar="FILE", help="a file of prompts, one a line")
    g.add_argument("--negative-prompt", default=None)
    g.add_argument("--guidance", type=float, default=None, help="guidance_scale (default: the pipeline's)")
    g.add_argument("--height", type=int, default=None)
    g.add_argument("--width", type=int, default=None)
    g.add_argument("--num-frames", type=int, default=None, help="video pipelines")
    g.add_argument("--call-arg", action="append", default=None, metavar="NAME=VALUE",
                   help="another argument of the pipeline's __call__, e.g. use_resolution_binning=false (repeatable)")
    g.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    g.add_argument("--device", default="cpu")
    g.add_argument("--variant", default=None, help="weights variant, e.g. fp16")


def _prepare(args: argparse.Namespace):
    """(prompts, pipeline class, CallOptions), all checked without loading any weights."""
    from .userpipe import CallOptions, check_call, parse_call_args, pipeline_class, read_prompts

    _positive(steps=args.steps, height=args.height, width=args.width, num_frames=args.num_frames)
    prompts = read_prompts(args.prompt, args.prompts)
    cls = pipeline_class(args.pipeline)
    options = CallOptions(steps=args.steps, negative_prompt=args.negative_prompt, guidance=args.guidance,
                          height=args.height, width=args.width, num_frames=args.num_frames,
                          extra=parse_call_args(args.call_arg))
    check_call(cls, options)
    return prompts, cls, options


def _load(args: argparse.Namespace):
    from .userpipe import load_pipeline, resolve_dtype

    dtype = resolve_dtype(args.dtype, args.device)
    _threads(args.threads)
    start = time.perf_counter()
    pipe = load_pipeline(args.pipeline, dtype, args.device, args.variant)
    print(f"loaded {type(pipe).__name__} ({type(pipe.transformer).__name__}, {str(dtype).replace('torch.', '')}, "
          f"{args.device}) in {time.perf_counter() - start:.1f} s")
    return pipe


def _video(cls) -> bool:
    from .userpipe import call_parameters

    return "num_frames" in call_parameters(cls)


def _method(text: str, force: bool, options):
    """--method: a method setting, or a profile JSON (checked against the options now, the model when loaded)."""
    from .engine.profile import Profile
    from .methods import parse_method

    if text.endswith(".json"):
        profile = Profile.load(text, force=force)
        profile.check_options(options.steps, options.height, options.width, options.num_frames)
        return profile
    return parse_method(text)


def _one_line_warnings(command):
    """Run ``command`` with ditcache's own warnings printed as one 'ditcache: warning:' line each (others as
    usual); the warnings machinery is restored after."""
    import functools
    import sys
    import warnings

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        with warnings.catch_warnings():
            usual = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None):
                if "ditcache" in str(filename):
                    print(f"ditcache: warning: {message}", file=sys.stderr)
                else:
                    usual(message, category, filename, lineno, file, line)

            warnings.showwarning = show
            return command(args)

    return run


# --------------------------------------------------------------------------- generate


@_one_line_warnings
def generate(args: argparse.Namespace) -> int:
    from . import metrics
    from .bench.pipeline import Judge, run_method
    from .engine.profile import as_profile
    from .methods import NoCache, describe
    from .userpipe import generate as pipeline_generate

    _positive(num=args.num, threads=args.threads)
    prompts, cls, options = _prepare(args)
    method = _method(args.method, args.force, options)
    video = _video(cls)
    out = args.out if args.out is not None else ("clip.gif" if video else "grid.png")
    out_path = _out_file(out, (".gif",) if video else IMAGE_SUFFIXES) if out else None
    pipe = _load(args)
    seeds = [args.seed + i for i in range(args.num or 1)]
    profile = as_profile(method)
    if profile is not None:
        profile.bind(pipe)  # another transformer is refused now, before any generation
    name = f"profile {args.method} ({profile.method_text})" if profile is not None else describe(method)
    print(f"ditcache generate: {len(prompts)} prompt(s) x {len(seeds)} seed(s), {options.steps} steps, method {name}")
    # warm-up (uncached, 2 steps): first-call costs (allocations, kernel choices) land on neither timed run
    pipeline_generate(pipe, replace(options, steps=min(2, options.steps)), prompts[:1], seeds[:1])
    start = time.perf_counter()
    ref = run_method(pipe, options, prompts, seeds, NoCache())
    ref_s = time.perf_counter() - start
    if isinstance(method, NoCache):
        print(f"\n  method none: no cache; every site computed at each of {options.steps} steps "
              f"({ref.flops / 1e9:.3f} GFLOPs in the transformer, {ref_s:.2f} s)")
        if out_path is not None:
            _picture(out_path, [("uncached", ref.images)], prompts, seeds, video)
            print(f"  wrote {out_path}")
        return 0
    start = time.perf_counter()
    got = run_method(pipe, options, prompts, seeds, method)
    got_s = time.perf_counter() - start
    s = got.stats
    counts = {k: v for k, v in s.counts().items() if v} if hasattr(s, "counts") else {}
    if counts:
        print(f"\n  steps: {s.steps()}, of which fully computed {s.full_steps()}; site calls: "
              + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" (of {len(s.sites)} sites per step)")
    print(f"  FLOPs (transformer): {got.flops / 1e9:.3f} G vs {ref.flops / 1e9:.3f} G uncached "
          f"({ref.flops / max(got.flops, 1):.2f}x fewer)")
    print("  " + wall_line(got_s, ref_s))
    print(f"  cache: peak {got.cache_bytes / 2**20:.2f} MiB")
    q = Judge(ref, [p for p in prompts for _ in seeds], bootstrap=0).score(got)
    line = f"  fidelity vs uncached (same prompts and seeds): PSNR {q['psnr']:.2f} dB"
    line += f", SSIM {q['ssim']:.4f}" if "ssim" in q else ""
    line += f", latent error {q['latent_err']:.4f}" if "latent_err" in q else ""
    print(line + f", max abs error {metrics.max_abs_error(got.images, ref.images):.4f}")
    if out_path is not None:
        title = profile.method_text if profile is not None else method.name
        _picture(out_path, [("uncached", ref.images), (title, got.images)], prompts, seeds, video)
        print(f"  wrote {out_path} (left: uncached, right: {title}; one row per prompt and seed)")
    return 0


# Below this, one run's wall-clock is mostly timer noise and per-call overhead on a shared CPU: no ratio.
MIN_TIMED_S = 1.0


def wall_line(cached_s: float, uncached_s: float) -> str:
    """The wall-clock line of ``generate``: a ratio only when both runs, each after a warm-up, are long enough
    for it to mean something."""
    head = f"wall:  {cached_s:.2f} s vs {uncached_s:.2f} s uncached"
    if min(cached_s, uncached_s) < MIN_TIMED_S:
        return head + f" (runs under {MIN_TIMED_S:g} s: no ratio; `ditcache bench` times interleaved medians)"
    return head + (f" ({uncached_s / cached_s:.2f}x; one run each after a warm-up, FLOP counting in both; "
                   "`ditcache bench` times interleaved medians)")


def _picture(path: Path, columns: list, prompts: list[str], seeds: list[int], video: bool) -> None:
    """Rows: one per (prompt, seed); columns: uncached, then cached. Clips: an animated GIF."""
    from .viz import picture_animation, picture_grid, save_gif

    titles = [f"{p[:40]} / seed {s}" for p in prompts for s in seeds]
    rows = [(title, _stack([images[i] for _, images in columns])) for i, title in enumerate(titles)]
    captions = [name for name, _ in columns]
    if video:
        save_gif(picture_animation(rows, captions), path)
    else:
        picture_grid(rows, captions).save(path)


def _stack(items: list):
    import torch

    return torch.stack(items)


# --------------------------------------------------------------------------- bench


@_one_line_warnings
def bench(args: argparse.Namespace) -> int:
    from .bench.pipeline import (
        MEASURES,
        compare,
        refuse_shipped_artifacts,
        report_dict,
        report_markdown,
        setting_list,
        write_report,
    )
    from .bench.report import wait_policy
    from .bench.running import _versions
    from .bench.settings import method_settings, names
    from .bench.tune import check_budget

    for flag, value in (("--config", args.config), ("--replay", args.replay), ("--trace", args.trace)):
        if value:
            raise ValueError(f"{flag} does not go with --pipeline")
    seeds = args.seeds if args.seeds is not None else 4
    _positive(seeds=seeds, repeats=args.repeats, threads=args.threads)
    prompts, cls, options = _prepare(args)
    if args.methods not in ("all", "none", ""):
        refuse_shipped_artifacts(method_settings(args.methods, "dit"))  # fail before any work, not after
    if args.budget:
        check_budget(args.budget)
    if names(args.peers) and names(args.peers) != ["all"]:
        from .peers import PEERS

        unknown = [n for n in names(args.peers) if n not in PEERS]
        if unknown:
            raise KeyError(f"unknown peer {unknown[0]!r}; known: {sorted(PEERS)}")
    out_dir = Path(args.out)
    if out_dir.is_file():
        raise ValueError(f"--out {args.out!r} is a file; bench writes a folder of reports")
    pipe = _load(args)
    seed_list = list(range(seeds))
    n_settings = len(setting_list(pipe, args.methods, args.peers))
    print(f"ditcache bench: {type(pipe).__name__}, {len(prompts)} prompt(s) x {seeds} seeds, {options.steps} steps, "
          f"{n_settings} settings")
    kept: dict = {}
    rows = compare(pipe, prompts, methods=args.methods, peers=args.peers, seeds=seed_list, steps=options.steps,
                   negative_prompt=options.negative_prompt, guidance=options.guidance, height=options.height,
                   width=options.width, num_frames=options.num_frames, call_args=options.extra,
                   repeats=args.repeats, bootstrap=args.bootstrap, quality=not args.speed_only, keep=kept,
                   log=lambda line: print(f"  {line}"))
    import torch

    info = {"pipeline": type(pipe).__name__, "source": args.pipeline, "transformer": type(pipe.transformer).__name__,
            "threads": torch.get_num_threads(), "omp_wait_policy": wait_policy(), "device": args.device,
            "dtype": str(pipe.transformer.dtype).replace("torch.", ""), "versions": _versions(),
            "measures": list(MEASURES), "missing": kept.get("missing", []),
            "config": {"prompts": prompts, "seeds": seed_list, "steps": options.steps, "repeats": args.repeats,
                       "bootstrap": args.bootstrap, "methods": args.methods, "peers": args.peers,
                       "call": {k: v for k, v in options.given().items()}}}
    report = report_dict(rows, info, args.budget)
    written = write_report(out_dir, report, rows, kept, prompts, seed_list)
    print(report_markdown(report))
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


# --------------------------------------------------------------------------- tune


@_one_line_warnings
def tune(args: argparse.Namespace) -> int:
    from .bench.tune import check_budget, knob_settings
    from .bench.tune import tune as run_tune

    if not args.pipeline:
        raise ValueError("tune needs --pipeline PATH_OR_ID (for the shipped defaults: ditcache bench --budget ...)")
    _positive(seeds=args.seeds, repeats=args.repeats, threads=args.threads)
    prompts, cls, options = _prepare(args)
    check_budget(args.budget)
    knob_settings(args.methods, options.steps)
    out = _out_file(args.out, (".json",), overwrite=args.overwrite)
    pipe = _load(args)
    print(f"ditcache tune: {type(pipe).__name__}, budget {args.budget}, {len(prompts)} prompt(s) x {args.seeds} "
          f"seeds, {options.steps} steps")
    profile = run_tune(pipe, prompts, args.budget, methods=args.methods, seeds=args.seeds, steps=options.steps,
                       negative_prompt=options.negative_prompt, guidance=options.guidance, height=options.height,
                       width=options.width, num_frames=options.num_frames, call_args=options.extra,
                       repeats=args.repeats, bootstrap=args.bootstrap, log=lambda line: print(f"  {line}"))
    profile.save(out)
    print("\nfastest setting per method within the budget:")
    for name, entry in profile.per_method.items():
        if entry.get("method") is None:
            print(f"  {name}: none ({entry['why']})")
        else:
            print(f"  {name}: {entry['method']}: {_measured(entry)}")
    print(f"\nwrote {out}: {profile.method_text} ({_measured(profile.measured)})")
    print(f"use it with: ditcache generate --pipeline {args.pipeline} --method {out} ..., or "
          f"ditcache.cached(pipe, {str(out)!r})")
    return 0


def _measured(m: dict) -> str:
    text = f"{m['flop_speedup']:.2f}x FLOPs"
    if m.get("wall_speedup") is not None:
        lo, hi = m.get("wall_speedup_range") or (m["wall_speedup"], m["wall_speedup"])
        text += f", {m['wall_speedup']:.2f}x wall [{lo:.2f}, {hi:.2f}]"
    for key, label, spec in (("psnr", "PSNR", ".2f"), ("ssim", "SSIM", ".4f"), ("latent_err", "latent err", ".4f")):
        if m.get(key) is not None:
            ci = m.get(f"{key}_ci")
            text += f", {label} {format(m[key], spec)}" + (f" [{format(ci[0], spec)}, {format(ci[1], spec)}]"
                                                          if ci else "")
    return text


# --------------------------------------------------------------------------- train


@_one_line_warnings
def train(args: argparse.Namespace) -> int:
    from . import learn

    if args.method not in ("l2c", "tokencache", "hyca"):
        raise ValueError(f"train {args.method} does not take --pipeline yet (l2c, tokencache and hyca do)")
    if args.model:
        raise ValueError("give --model or --pipeline, not both")
    cfg = train_config(args)  # checks its values before any weights are loaded
    prompts, cls, options = _prepare(args)
    slug = Path(args.pipeline.rstrip("/")).name or "pipeline"
    out = _out_file(args.out or str(user_dir() / "artifacts" / f"{args.method}_{slug}.safetensors"),
                    (".safetensors",), overwrite=args.overwrite)
    pipe = _load(args)
    trainer = {"l2c": learn.train_l2c, "tokencache": learn.train_tokencache, "hyca": learn.train_hyca}[args.method]
    start = time.perf_counter()
    try:
        art, result = trainer(pipe, prompts, options.steps, cfg, seeds=[args.seed], height=options.height,
                              width=options.width, num_frames=options.num_frames, guidance=options.guidance,
                              negative_prompt=options.negative_prompt, call_args=options.extra)
        art.save(out)  # atomic: a temporary file renamed over --out
    except KeyboardInterrupt:
        print(f"\ninterrupted: nothing written to {out}")
        return 130
    seconds = round(time.perf_counter() - start, 1)
    summary = {"config": art.config, "seconds": seconds, "fingerprint": art.fingerprint, "pipeline": args.pipeline,
               "prompts": prompts, ("solvers" if args.method == "hyca" else "losses"): result}
    _write_json(out.with_suffix(".json"), summary)
    if args.method == "hyca":
        print(f"wrote {out}: share of channels per solver " + ", ".join(f"{k} {v:.1%}" for k, v in result.items()))
    else:
        print(f"wrote {out}: final loss {sum(result[-20:]) / len(result[-20:]):.4f} "
              f"(first {sum(result[:20]) / len(result[:20]):.4f}); loss curve in {out.with_suffix('.json')}")
    print(f"fingerprint {art.fingerprint}, {len(art.timesteps)} steps of {art.sampler}")
    print(f"use it with: ditcache generate --pipeline {args.pipeline} --method {args.method}:artifact={out} ...")
    return 0


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, default=str))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
