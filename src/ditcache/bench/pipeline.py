"""Benchmarks on a user's own diffusers pipeline: every method and peer on it, same prompts and seeds.

``compare(pipe, prompts, methods=..., peers=..., seeds=..., steps=...)`` generates the uncached images and each
setting's for every (prompt, seed) through the pipeline's own ``__call__`` (its text encoders, scheduler, CFG and
VAE), then returns one ``Row`` per setting: FLOPs of the transformer calls (torch's counter), cache bytes, wall-
clock (one call per setting, all settings round-robin after a warm-up round: medians, and the range of the
per-round ratios to uncached), and quality against the uncached images on the same prompt and seed, per sample,
with 95% bootstrap intervals over samples: PSNR and SSIM of the decoded images (in [0, 1]), and ``latent_err``,
the relative L2 distance of the pipeline's final latents (its own latent space, before the VAE). LPIPS and CLIP
score join when their packages and weights are on this machine (``optional_measures`` says what is missing).

Peers run on the pipeline's transformer (``pipeline_peers``): diffusers' hooks get a cache context per call
(branch = the call's place within its step, so split CFG keeps two states), MagCache calibrates first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..engine.profile import as_profile
from ..userpipe import CallOptions, generate
from .quality import _interval
from .report import Row, _ci, _fmt, _slug, best_under_budget, markdown_table, pareto_plot, threads_text
from .running import median, peer_settings, time_interleaved
from .settings import names

# The measures a pipeline benchmark can report: per sample, against the uncached sample of the same prompt and
# seed (CLIP score: of the sample against its prompt). A budget may name these.
MEASURES = ("psnr", "ssim", "latent_err", "lpips", "clip_score")
OPTIONAL = ("lpips", "clip_score")
CLIP_MODEL = "openai/clip-vit-base-patch32"  # CLIP score's model: read from the local Hugging Face cache only


# --------------------------------------------------------------------------- what runs


@dataclass
class Outcome:
    """One setting's generations over every prompt and seed."""

    images: torch.Tensor                  # (N, C, H, W) or (N, F, C, H, W) in [0, 1], prompt-major
    latents: torch.Tensor | None          # (N, ...) the pipeline's final latents, when it exposes them
    flops: int = 0                        # transformer calls only (text encoders and VAE are the same for all)
    plan_flops: int = 0
    cache_bytes: int = 0
    plan_share: float | None = None       # host-side planning / wall of the transformer calls (ditcache)
    num_steps: int | None = None          # denoising steps the engine counted per generation
    latent_shape: list | None = None      # the transformer's hidden_states shape without the batch
    peer_settings: dict | None = None     # a peer's settings as applied (MagCache: with its calibrated ratios)
    stats: object = None                  # the ditcache run's stats (RunStats, or PipelineStats)
    extra: dict = field(default_factory=dict)


def _stats(run) -> dict:
    """Numbers of a Run or a PipelineRun (several transformers): summed over its transformers."""
    per = getattr(run.stats, "per_model", None) or {"transformer": run.stats}
    return {"flops": sum(s.flops for s in per.values()), "plan_flops": sum(s.plan_flops for s in per.values()),
            "cache": max(s.peak_cache_bytes for s in per.values()),
            "plan_s": sum(r.plan_s for s in per.values() for r in s.records),
            "wall_s": sum(s.wall_s for s in per.values())}


def _first_run(run):
    return getattr(run, "runs", {"transformer": run})["transformer"]


def run_method(pipe, options: CallOptions, prompts: list[str], seeds: list[int], method,
               count_flops: bool = True) -> Outcome:
    """Every (prompt, seed) with ``method`` (a method config, method text, or a profile) applied to the pipeline."""
    from ..engine import cached

    shapes: list = []  # the first call's hidden_states shape without the batch (what a profile records)

    def first_shape(module, args, kwargs) -> None:
        x = kwargs.get("hidden_states", args[0] if args else None)
        if not shapes and isinstance(x, torch.Tensor):
            shapes.append(list(x.shape[1:]))

    with cached(pipe, method, count_flops=count_flops) as run:
        first = _first_run(run)
        handle = first.model.register_forward_pre_hook(first_shape, with_kwargs=True)
        try:
            images, latents = generate(pipe, options, prompts, seeds)
        finally:
            handle.remove()
    n = _stats(run)
    return Outcome(images, _cat(latents), n["flops"], n["plan_flops"], n["cache"], n["plan_s"] / max(n["wall_s"], 1e-9),
                   first.clock.num_steps, shapes[0] if shapes else None, stats=run.stats)


def _cat(latents: list) -> torch.Tensor | None:
    return torch.cat(latents) if latents and all(x is not None for x in latents) else None


# --------------------------------------------------------------------------- quality


def optional_measures(wanted=OPTIONAL) -> tuple[dict[str, Callable], list[str]]:
    """The optional measures that can run here (name -> scorer) and a line for each that cannot, naming what is
    missing. Scorers: lpips(images, ref) -> (N,) and clip_score(images, prompts) -> (N,)."""
    have, missing = {}, []
    if "lpips" in wanted:
        try:
            import lpips  # the package ships its linear heads; AlexNet's weights come from torchvision's cache

            net = lpips.LPIPS(net="alex", verbose=False).eval()

            def score_lpips(images, ref):
                flat = lambda x: x.reshape(-1, *x.shape[-3:]) * 2 - 1  # noqa: E731  frames as images, [-1, 1]
                with torch.no_grad():
                    d = net(flat(images), flat(ref)).reshape(images.shape[0], -1)
                return d.mean(1).double()
            have["lpips"] = score_lpips
        except Exception as e:
            missing.append(f"LPIPS not measured: it needs the lpips package and its AlexNet weights in torchvision's "
                           f"local cache (pip install 'ditcache[quality]'; {type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})")
    if "clip_score" in wanted:
        try:
            from transformers import CLIPModel, CLIPProcessor

            model = CLIPModel.from_pretrained(CLIP_MODEL, local_files_only=True).eval()
            processor = CLIPProcessor.from_pretrained(CLIP_MODEL, local_files_only=True)

            def score_clip(images, prompts):
                frames = images if images.dim() == 4 else images[:, images.shape[1] // 2]   # video: middle frame
                inputs = processor(text=prompts, images=list(frames), return_tensors="pt", padding=True,
                                   do_rescale=False)
                with torch.no_grad():
                    out = model(**inputs)
                img = torch.nn.functional.normalize(out.image_embeds, dim=-1)
                txt = torch.nn.functional.normalize(out.text_embeds, dim=-1)
                return (100 * (img * txt).sum(-1)).clamp_min(0).double()
            have["clip_score"] = score_clip
        except Exception as e:
            missing.append(f"CLIP score not measured: it needs transformers and {CLIP_MODEL} in the local Hugging "
                           f"Face cache ({type(e).__name__})")
    return have, missing


class Judge:
    """The uncached samples every setting is measured against, and the bootstrap resamples (shared by all
    settings, so their intervals are paired)."""

    def __init__(self, ref: Outcome, prompts_per_sample: list[str], bootstrap: int = 200, seed: int = 0,
                 optional: dict[str, Callable] | None = None) -> None:
        self.ref, self.prompts = ref, prompts_per_sample
        n = ref.images.shape[0]
        g = torch.Generator().manual_seed(seed)
        self.resamples = torch.randint(n, (bootstrap, n), generator=g) if bootstrap and n > 1 else None
        self.optional = optional or {}
        self.ssim_fits = min(ref.images.shape[-2:]) >= 11  # SSIM's 11-tap window

    def _mean_ci(self, per_sample: torch.Tensor) -> tuple[float, tuple[float, float] | None]:
        value = float(per_sample.mean())
        return value, (_interval(per_sample[self.resamples].mean(1)) if self.resamples is not None else None)

    def reference_row(self) -> dict:
        out = {}
        if "clip_score" in self.optional:
            out["clip_score"], out["clip_score_ci"] = self._mean_ci(
                self.optional["clip_score"](self.ref.images, self.prompts))
        return out

    def score(self, got: Outcome) -> dict:
        from .. import metrics

        out: dict = {}
        pairs = list(zip(got.images, self.ref.images))
        psnr = torch.tensor([min(metrics.psnr(a, b, data_range=1.0), 99.0) for a, b in pairs])  # identical: 99 dB
        out["psnr"], out["psnr_ci"] = self._mean_ci(psnr)
        if self.ssim_fits:
            ssim = torch.tensor([metrics.ssim(a, b, data_range=1.0) for a, b in pairs])
            out["ssim"], out["ssim_ci"] = self._mean_ci(ssim)
        if got.latents is not None and self.ref.latents is not None:
            a, b = got.latents.flatten(1).double(), self.ref.latents.flatten(1).double()
            err = (a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-12)                  # (N,) relative L2
            out["latent_err"], out["latent_err_ci"] = self._mean_ci(err)
        if "lpips" in self.optional:
            out["lpips"], out["lpips_ci"] = self._mean_ci(self.optional["lpips"](got.images, self.ref.images))
        if "clip_score" in self.optional:
            out["clip_score"], out["clip_score_ci"] = self._mean_ci(self.optional["clip_score"](got.images,
                                                                                                  self.prompts))
        return out


# --------------------------------------------------------------------------- the comparison


def setting_list(pipe, methods, peers) -> list[tuple[str, str, object]]:
    """(kind, name, method config or peer settings) for ``methods`` ('all', 'none', a comma list of sweep names
    and settings as in ``ditcache bench``, or a list of method configs / texts) and ``peers`` (names, 'all',
    'none'). 'all' leaves out the learned methods: their artifacts are trained per model (``ditcache train``);
    name them with ``artifact=PATH``."""
    from ..methods import parse_method, resolve_method
    from .settings import method_settings
    from .subjects import _family

    family = _family(pipe.transformer)
    if isinstance(methods, str):
        if methods == "all":
            chosen = [(n, m) for n, m in method_settings("all", family) if not hasattr(m, "artifact")]
        else:
            chosen = method_settings(methods, family)
            refuse_shipped_artifacts(chosen)
    else:
        chosen = []
        for m in methods:
            if as_profile(m) is not None:
                chosen.append(("profile", as_profile(m)))
            else:
                m = parse_method(m) if isinstance(m, str) else resolve_method(m)
                chosen.append((m.name, m))
    out = [("ditcache", n, m) for n, m in chosen]
    peer_names = names(peers) if isinstance(peers, str) else list(peers)
    out += [("peer", name, dict(s)) for name, s in peer_settings(peer_names)]
    return out


def refuse_shipped_artifacts(chosen: list[tuple[str, object]]) -> None:
    """A learned method named without ``artifact=PATH`` would load a shipped default's artifact, which no
    user's pipeline can run: refused, naming the command that trains one."""
    for name, m in chosen:
        art = getattr(m, "artifact", None)
        if isinstance(art, str) and "/" not in art and "\\" not in art and not art.endswith(".safetensors"):
            raise ValueError(f"{name} needs an artifact trained on this pipeline: `ditcache train {name} --pipeline "
                             f"... --out {name}.safetensors`, then {name}:artifact={name}.safetensors")


def _describe(kind: str, thing) -> str:
    from ..methods import describe

    if kind == "peer":
        return json.dumps(thing, sort_keys=True, default=str)
    prof = as_profile(thing)
    return f"profile {prof.path} ({prof.method_text})" if prof is not None else describe(thing)


def compare(pipe, prompts: list[str], methods="fora,taylorseer", peers="none", seeds=4, steps: int = 50, *,
            negative_prompt: str | None = None, guidance: float | None = None, height: int | None = None,
            width: int | None = None, num_frames: int | None = None, call_args: dict | None = None,
            repeats: int = 3, bootstrap: int = 200, quality: bool = True, measures=OPTIONAL,
            progress: bool = True, log=print, keep: dict | None = None) -> list[Row]:
    """Every setting of ``methods`` and ``peers`` on ``pipe`` for every prompt and seed (``seeds``: a count, from
    0, or a list); returns the uncached row first, then one row per setting (``row.error`` says why a setting
    could not run). ``keep``, if given, receives the outcomes ("reference" and each row's index, with images)
    and under "missing" the optional measures that could not run here."""
    options = CallOptions(steps=steps, negative_prompt=negative_prompt, guidance=guidance, height=height,
                          width=width, num_frames=num_frames, extra=dict(call_args or {}))
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    settings = setting_list(pipe, methods, peers)
    optional, missing = optional_measures(measures) if quality and measures else ({}, [])
    for line in missing:
        log(line)
    if keep is not None:
        keep["missing"] = missing
    return _compare(pipe, options, list(prompts), seeds, settings, repeats, bootstrap, quality, optional, progress,
                    log, keep)


def _compare(pipe, options, prompts, seeds, settings, repeats, bootstrap, quality, optional, progress, log, keep):
    from ..methods import NoCache
    from .pipeline_peers import run_peer

    bar = tqdm(total=len(settings) + 1, desc="bench: generations", disable=not progress)
    ref = run_method(pipe, options, prompts, seeds, NoCache())
    bar.update(1)
    n = ref.images.shape[0]
    rows = [Row("reference", "none", "uncached", gflops_per_image=ref.flops / 1e9 / n)]
    rows[0].extra.update(num_steps=ref.num_steps, latent_shape=ref.latent_shape)
    outcomes: dict[int, Outcome] = {}
    for i, (kind, name, thing) in enumerate(settings):
        row = Row(kind, name, _describe(kind, thing))
        rows.append(row)
        try:
            got = (run_peer(pipe, options, prompts, seeds, name, thing) if kind == "peer"
                   else run_method(pipe, options, prompts, seeds, thing))
            outcomes[i] = got
            row.gflops_per_image = got.flops / 1e9 / n
            row.flop_speedup = ref.flops / max(got.flops, 1)
            row.extra.update(got.extra)
            if kind != "peer":
                row.plan_gflops_per_image = got.plan_flops / 1e9 / n
                row.cache_mib = got.cache_bytes / 2**20
                row.extra["planning_share"] = got.plan_share
        except Exception as e:  # a setting that cannot run is reported, and the comparison goes on
            row.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        bar.update(1)
    bar.close()
    time_settings(pipe, options, prompts[0], seeds, settings, rows, outcomes, repeats, progress)
    if quality:
        judge = Judge(ref, [p for p in prompts for _ in seeds], bootstrap, optional=optional)
        for k, v in judge.reference_row().items():
            setattr(rows[0], k, v)
        for i, got in outcomes.items():
            for k, v in judge.score(got).items():
                setattr(rows[i + 1], k, v)
    if keep is not None:
        keep["reference"] = ref
        keep.update({i + 1: got for i, got in outcomes.items()})
    return rows


def time_settings(pipe, options, prompt, seeds, settings, rows, outcomes, repeats, progress) -> None:
    """Wall-clock of one pipeline call (the first prompt, every seed) per setting, round-robin after a warm-up
    round, FLOPs not counted. Sets each row's median and the range of its per-round ratios to uncached."""
    from ..methods import NoCache
    from .pipeline_peers import PipelinePeer

    def method_timer(method):
        return lambda: run_method(pipe, options, [prompt], seeds, method, count_flops=False)

    def peer_timer(name, settings_):
        def timed() -> float:
            import time

            peer = PipelinePeer(pipe, name, settings_, options.steps)  # applied and removed untimed
            try:
                peer.new_generation()
                start = time.perf_counter()
                generate(pipe, options, [prompt], seeds)
                return time.perf_counter() - start
            finally:
                peer.remove()
        return timed

    fns: dict[str, Callable] = {"ref": method_timer(NoCache())}
    for i, (kind, name, thing) in enumerate(settings):
        if i in outcomes:
            fns[str(i)] = peer_timer(name, outcomes[i].peer_settings) if kind == "peer" else method_timer(thing)
    times = time_interleaved(fns, repeats=repeats, warmup=1, progress=progress)
    rows[0].wall_s, rows[0].wall_speedup, rows[0].flop_speedup = median(times["ref"]), 1.0, 1.0
    for key, ts in times.items():
        if key == "ref":
            continue
        row = rows[int(key) + 1]
        row.wall_s = median(ts)
        row.wall_speedup = median(times["ref"]) / row.wall_s
        ratios = [r / t for r, t in zip(times["ref"], ts)]
        row.wall_speedup_range = (min(ratios), max(ratios))


# --------------------------------------------------------------------------- reports


def report_dict(rows: list[Row], info: dict, budget: str | None = None) -> dict:
    report = {**info, "rows": [asdict(r) for r in rows]}
    if budget:
        report["budget"] = {"budget": budget,
                            "best": {k: asdict(r) for k, r in best_under_budget(rows, budget).items()}}
    return report


def report_markdown(report: dict) -> str:
    rows = [Row(**r) for r in report["rows"]]
    ok = [r for r in rows if not r.error]
    header = ["kind", "method", "setting", "GFLOPs/img", "FLOP x", "wall s/call", "wall x [range]", "cache MiB",
              "PSNR dB", "SSIM", "latent err"]
    table = [[r.kind, r.method, f"`{r.setting}`", _fmt(r.gflops_per_image, ".3f"), _fmt(r.flop_speedup, ".2f"),
              _fmt(r.wall_s, ".3f"), _ci(r.wall_speedup, r.wall_speedup_range, ".2f"), _fmt(r.cache_mib, ".2f"),
              _ci(r.psnr, r.psnr_ci, ".2f"), _ci(r.ssim, r.ssim_ci, ".4f"), _ci(r.latent_err, r.latent_err_ci, ".4f")]
             for r in ok]
    for name, label, spec in (("lpips", "LPIPS", ".4f"), ("clip_score", "CLIP score", ".2f")):
        if any(getattr(r, name) is not None for r in ok):
            header.append(label)
            for line, r in zip(table, ok):
                line.append(_ci(getattr(r, name), getattr(r, f"{name}_ci"), spec))
    cfg = report["config"]
    lines = [f"# ditcache bench: {report['pipeline']} ({report['transformer']})", "",
             f"{len(cfg['prompts'])} prompt(s) x {len(cfg['seeds'])} seeds, {cfg['steps']} steps, "
             f"{threads_text(report)}, device {report['device']}, dtype {report['dtype']}. FLOPs: the "
             "transformer's calls (torch's counter). Wall-clock: median of "
             f"{cfg['repeats']} interleaved calls (first prompt, every seed) after a warm-up round; [range] = the "
             "per-round ratios to uncached. Quality against the uncached sample of the same prompt and seed, mean "
             f"over samples with a 95% bootstrap interval ({cfg['bootstrap']} resamples, paired): PSNR and SSIM of "
             "the images in [0, 1], latent err = relative L2 distance of the final latents. Versions: "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".", ""]
    lines += [f"Not measured: {m}" for m in report.get("missing", [])]
    lines += ["", markdown_table(header, table)]
    failed = [r for r in rows if r.error]
    if failed:
        lines += ["", "## Settings that could not run", ""]
        lines += [f"- {r.kind} {r.method} `{r.setting}`: {r.error}" for r in failed]
    if "budget" in report:
        lines += ["", f"## Fastest setting per method under the budget `{report['budget']['budget']}`", ""]
        best = report["budget"]["best"]
        if not best:
            lines.append("No setting met the budget.")
        lines += [f"- {k}: `{r['setting']}` at {r['wall_speedup']:.2f}x wall-clock, {r['flop_speedup']:.2f}x FLOPs"
                  for k, r in sorted(best.items(), key=lambda kv: -kv[1]["wall_speedup"])]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, report: dict, rows: list[Row], kept: dict, prompts: list[str], seeds: list[int],
                 columns: int = 8) -> list[Path]:
    """report.json, report.md, pareto.png, and per method a grid (GIF for video) of its first samples under
    the uncached ones. Returns the files written."""
    from ..viz import picture_animation, picture_grid, save_gif

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "report.md").write_text(report_markdown(report))
    written = [out_dir / "report.json", out_dir / "report.md"]
    pareto_plot(rows, out_dir / "pareto.png", title=f"{report['pipeline']}: {report['config']['steps']} steps")
    if (out_dir / "pareto.png").exists():
        written.append(out_dir / "pareto.png")
    ref = kept["reference"].images[:columns]
    captions = [f"{_short(p)} / {s}" for p in prompts for s in seeds][:columns]
    by_method: dict[str, list] = {}
    for i, got in kept.items():
        if isinstance(i, int):
            row = rows[i]
            by_method.setdefault(f"{row.kind}_{row.method}", []).append((row.setting[:40], got.images[:columns]))
    for key, grid_rows in by_method.items():
        grid_rows = [("uncached", ref)] + grid_rows
        if ref.dim() == 5:
            path = out_dir / f"clips_{_slug(key)}.gif"
            save_gif(picture_animation(grid_rows, captions), path)
        else:
            path = out_dir / f"grid_{_slug(key)}.png"
            picture_grid(grid_rows, captions).save(path)
        written.append(path)
    return written


def _short(text: str, n: int = 24) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
