"""Tuning a pipeline to a quality budget (the answer is a profile, ``ditcache.engine.profile``).

``tune(pipe, prompts, "psnr>=30", methods="fora,taylorseer", seeds=4, steps=28)`` finds, for each method, the
most aggressive setting of its speed knob (``KNOBS``: FORA's interval, SpeCa's threshold, TokenCache's ratio, ...)
whose quality against the uncached pipeline on the same prompts and seeds meets the budget, without running the
whole sweep: a coarse pass along the knob's values (every ~sqrt(n)-th, conservative first, until one fails), then
bisection between the last that met the budget and the first that did not. This assumes quality falls
monotonically along the knob, which is what a speed knob does. The chosen settings are then timed together,
interleaved with uncached, and the fastest becomes the profile's method.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict

from ..engine.profile import Profile, fingerprints
from ..methods import NoCache, parse_method
from ..userpipe import CallOptions
from .pipeline import MEASURES, OPTIONAL, Judge, optional_measures, run_method, time_settings
from .report import Row, meets
from .running import _versions
from .settings import parse_budget


def _intervals(steps: int) -> list[int]:
    return list(range(2, max(3, steps // 2 + 2)))  # past half the steps a schedule has one or two full steps


# method -> (its speed knob, the knob's values for a step count, from conservative to aggressive)
KNOBS: dict[str, tuple[str, Callable[[int], list]]] = {
    "fora": ("interval", _intervals),
    "taylorseer": ("interval", _intervals),
    "toca": ("interval", _intervals),
    "clusca": ("interval", _intervals),
    "freqca": ("interval", _intervals),
    "hyca": ("interval", _intervals),
    # SpeCa's error threshold: a higher one accepts more drafts (its own range is about 0.05-1)
    "speca": ("threshold", lambda steps: [0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0]),
    # L2C: a branch is computed on a cache step iff its learned score exceeds the threshold
    "l2c": ("threshold", lambda steps: [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99]),
    # TokenCache: the share of tokens recomputed on cache steps
    "tokencache": ("ratio", lambda steps: [0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05]),
}
LEARNED = ("l2c", "tokencache", "hyca")


# --------------------------------------------------------------------------- tuning


def check_budget(budget: str) -> list[tuple[str, str, float, bool]]:
    """A budget a pipeline tune can judge: measures against uncached, absolute values. Refused before work."""

    clauses = parse_budget(budget)
    for metric, op, value, relative in clauses:
        if metric not in MEASURES:
            raise ValueError(f"budget {budget!r}: {metric!r} is not measured on a pipeline (it needs the shipped "
                             f"defaults' classifier); pipelines measure {', '.join(MEASURES)}")
        if relative:
            raise ValueError(f"budget {budget!r}: on a pipeline every measure is already against uncached; give "
                             f"an absolute value, e.g. '{metric}{op}{value:g}'")
        if metric in OPTIONAL:
            _, missing = optional_measures((metric,))
            if missing:
                raise ValueError(f"budget {budget!r}: {missing[0]}")
    return clauses


def _items(text: str) -> list[str]:
    """'fora,taylorseer:order=1,warmup=3' -> ['fora', 'taylorseer:order=1,warmup=3'] (a key=value after a
    setting stays with it)."""
    items: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if "=" in part and ":" not in part and items and ":" in items[-1]:
            items[-1] += "," + part
        elif part:
            items.append(part)
    return items


def knob_settings(text: str, steps: int) -> list[tuple[str, str, list[tuple[str, object]]]]:
    """``--methods`` for tune: a comma list of method names or settings ('taylorseer:order=1'); each item ->
    (name, knob, [(setting text, method)] along the knob, conservative first). The text is the item with the
    knob's value set, so a profile's method reads back exactly. Learned methods need ``artifact=PATH``."""

    out = []
    for item in _items(text):
        name, _, args = item.partition(":")
        name = name.strip().lower()
        if name not in KNOBS:
            raise KeyError(f"tune has no speed knob for {name!r}; it searches {', '.join(KNOBS)}")
        parse_method(item)  # a bad setting is refused here, before any work
        if name in LEARNED and "artifact=" not in args:
            raise ValueError(f"{name} needs an artifact trained on this pipeline: `ditcache train {name} --pipeline "
                             f"... --out {name}.safetensors`, then --methods {name}:artifact={name}.safetensors")
        knob, values = KNOBS[name]
        kept = [a.strip() for a in args.split(",") if a.strip() and a.partition("=")[0].strip() != knob]
        settings = []
        for v in values(steps):
            setting = f"{name}:" + ",".join(kept + [f"{knob}={v}"])
            try:
                settings.append((setting, parse_method(setting)))
            except ValueError:  # a value the method refuses at this step count
                continue
        if not settings:
            raise ValueError(f"{item}: no value of {knob} is valid at {steps} steps")
        out.append((name, knob, settings))
    names = [n for n, _, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"--methods names a method twice ({', '.join(names)}): tune searches one knob per method")
    return out


def search(n: int, meets: Callable[[int], bool]) -> int | None:
    """The largest index i in 0..n-1 with meets(i), assuming meets is True up to some index and False after:
    every ~sqrt(n)-th index first (stopping at the first False), then bisection. None when meets(0) is False."""
    known: dict[int, bool] = {}

    def ok(i: int) -> bool:
        if i not in known:
            known[i] = meets(i)
        return known[i]

    stride = max(1, round(math.sqrt(n)))
    last_pass, first_fail = None, None
    for i in list(range(0, n, stride)) + [n - 1]:
        if ok(i):
            last_pass = i
        else:
            first_fail = i
            break
    if last_pass is None:
        return None
    if first_fail is None:
        return last_pass
    lo, hi = last_pass, first_fail
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def tune(pipe, prompts: list[str], budget: str, methods: str = "fora,taylorseer,freqca,speca", seeds=4,
         steps: int = 50, *, negative_prompt: str | None = None, guidance: float | None = None,
         height: int | None = None, width: int | None = None, num_frames: int | None = None,
         call_args: dict | None = None, repeats: int = 3, bootstrap: int = 200, progress: bool = True,
         log=print) -> Profile:
    """The fastest setting of each method within ``budget`` on ``pipe`` (see the module docstring), and the
    profile of the fastest of them. Raises ValueError when no setting of any method meets the budget."""

    clauses = check_budget(budget)
    options = CallOptions(steps=steps, negative_prompt=negative_prompt, guidance=guidance, height=height,
                          width=width, num_frames=num_frames, extra=dict(call_args or {}))
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    knobs = knob_settings(methods, steps)
    optional, _ = optional_measures(tuple(m for m, *_ in clauses))
    ref = run_method(pipe, options, prompts, seeds, NoCache())
    judge = Judge(ref, [p for p in prompts for _ in seeds], bootstrap, optional=optional)
    reference = Row("reference", "none", "uncached")
    evaluated: list[dict] = []
    best: dict[str, tuple[Row, object]] = {}
    per_method: dict[str, dict] = {}
    for name, knob, settings in knobs:
        rows: dict[int, Row] = {}

        def meets_budget(i: int) -> bool:
            text, m = settings[i]
            row = Row("ditcache", name, text)
            try:
                got = run_method(pipe, options, prompts, seeds, m)
            except Exception as e:  # a setting that cannot run on this pipeline ends the search there
                row.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                evaluated.append({"method": row.setting, "error": row.error})
                log(f"  {row.setting}: could not run ({row.error})")
                return False
            row.flop_speedup = ref.flops / max(got.flops, 1)
            for k, v in judge.score(got).items():
                setattr(row, k, v)
            ok = meets(row, reference, budget)
            rows[i] = row
            evaluated.append({"method": row.setting, "meets": ok, "flop_speedup": row.flop_speedup,
                              **{k: getattr(row, k) for k, *_ in clauses}})
            log(f"  {row.setting}: " + ", ".join(f"{k} {getattr(row, k):.4g}" for k, *_ in clauses
                                                   if getattr(row, k) is not None)
                + f", {row.flop_speedup:.2f}x FLOPs: " + ("within" if ok else "outside") + " the budget")
            return ok

        log(f"tune {name}: {knob} over {[getattr(m, knob) for _, m in settings]}")
        i = search(len(settings), meets_budget)
        if i is None:
            per_method[name] = {"method": None, "why": f"its most conservative setting "
                                f"({settings[0][0]}) does not meet {budget}"}
            continue
        best[name] = (rows[i], settings[i])
    if not best:
        raise ValueError(f"no setting of {', '.join(n for n, _, _ in knobs)} meets the budget {budget!r} on this "
                         "pipeline: loosen it, or try other methods")
    chosen = list(best.items())
    timing_rows = [Row("reference", "none", "uncached")] + [row for _, (row, _) in chosen]
    time_settings(pipe, options, prompts[0], seeds, [("ditcache", n, m[1]) for n, (_, m) in chosen], timing_rows,
                  {i: None for i in range(len(chosen))}, repeats, progress)
    for name, (row, m) in chosen:
        per_method[name] = {"method": m[0], **_measures(row)}
    _, (winner_row, winner) = max(chosen, key=lambda kv: (kv[1][0].wall_speedup, kv[1][0].flop_speedup))
    measured_at = {"transformers": fingerprints(pipe), "pipeline": type(pipe).__name__, "steps": steps,
                   "num_steps": ref.num_steps, "latent_shape": ref.latent_shape, "height": height, "width": width,
                   "num_frames": num_frames, "dtype": str(pipe.transformer.dtype).replace("torch.", ""),
                   "device": str(pipe.transformer.device), "prompts": len(prompts), "seeds": seeds}
    return Profile(winner[0], measured_at, {"method": winner[0], **_measures(winner_row)}, budget,
                   per_method, evaluated, _versions())


def _measures(row) -> dict:
    keys = ("flop_speedup", "wall_speedup", "wall_speedup_range", "psnr", "psnr_ci", "ssim", "ssim_ci",
            "latent_err", "latent_err_ci", "lpips", "lpips_ci", "clip_score", "clip_score_ci")
    d = asdict(row)
    return {k: d[k] for k in keys if d.get(k) is not None}
