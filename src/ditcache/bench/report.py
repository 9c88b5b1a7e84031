"""Rows, budgets, and what a benchmark writes: report.md, report.json, the Pareto plot and image grids."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .settings import parse_budget


@dataclass
class Row:
    kind: str                          # "reference" | "ditcache" | "peer"
    method: str                        # method or peer name
    setting: str                       # its settings as text
    gflops_per_image: float | None = None  # everything executed, planning included
    plan_gflops_per_image: float | None = None  # of which planning: token scores, k-means, verification
    flop_speedup: float | None = None  # uncached FLOPs / these (planning included)
    wall_s: float | None = None        # median wall-clock of one batch
    wall_speedup: float | None = None
    cache_mib: float | None = None     # peak bytes held by ditcache's store (peers: not reported)
    peak_gpu_mib: float | None = None  # CUDA only
    psnr: float | None = None          # mean over images, vs uncached on the same seeds (None for uncached)
    psnr_ci: tuple | None = None       # 95% bootstrap interval
    ssim: float | None = None
    featerr: float | None = None       # paired distance to uncached in the classifier's feature space (relative)
    featerr_ci: tuple | None = None
    fd: float | None = None            # FD in classifier space vs the 10k Fashion-MNIST test images
    fd_ci: tuple | None = None
    fd_delta: float | None = None      # fd - uncached fd, paired over the same seeds
    fd_delta_ci: tuple | None = None
    fd_significant: bool | None = None  # the paired interval of fd_delta excludes 0
    accuracy: float | None = None      # share of images classified as the requested class
    accuracy_ci: tuple | None = None
    accuracy_delta: float | None = None
    accuracy_delta_ci: tuple | None = None
    accuracy_significant: bool | None = None
    consistency: float | None = None   # clips: share of frames given the clip's majority label
    consistency_ci: tuple | None = None
    motion_err: float | None = None    # clips: frame-to-frame changes vs uncached's, relative L1
    # pipelines (bench/pipeline.py): per-sample measures against uncached on the same prompt and seed
    ssim_ci: tuple | None = None
    latent_err: float | None = None    # relative L2 distance of the pipeline's final latents
    latent_err_ci: tuple | None = None
    lpips: float | None = None         # when the lpips package and its weights are here
    lpips_ci: tuple | None = None
    clip_score: float | None = None    # 100 x cosine(image, prompt) in CLIP space, when its weights are here
    clip_score_ci: tuple | None = None
    wall_speedup_range: tuple | None = None  # min and max of the per-round ratios to uncached
    compiled_wall_s: float | None = None  # --compile: median wall-clock of one batch on the compiled transformer
    compiled_wall_speedup: float | None = None  # against the compiled uncached model (not the eager one)
    error: str | None = None           # why this setting could not run
    extra: dict = field(default_factory=dict)


def wait_policy() -> str | None:
    """This process's OMP_WAIT_POLICY (None: unset, libgomp's default of spinning a while before sleeping).
    Wall-clock depends on it: under PASSIVE each parallel op wakes sleeping threads, which costs methods made
    of many small ops more than the uncached model (BENCHMARKS.md, token paths)."""
    return os.environ.get("OMP_WAIT_POLICY")


def threads_text(report: dict) -> str:
    """'2 threads (OMP_WAIT_POLICY=PASSIVE)' for a report header; reports written before the policy was
    recorded say only the thread count."""
    text = f"{report['threads']} threads"
    if "omp_wait_policy" not in report:
        return text
    policy = report["omp_wait_policy"]
    return text + (f" (OMP_WAIT_POLICY={policy})" if policy else " (OMP_WAIT_POLICY unset)")


# --------------------------------------------------------------------------- budgets


def bound(row, ref, metric: str, op: str, relative: bool) -> float | None:
    """The end of the row's 95% interval that decides a budget clause: the low end for ``>=``, the high end
    for ``<=``. A clause relative to uncached on a metric with a paired difference (FD, accuracy) uses
    uncached's value plus that difference's interval (the pairing removes the seeds' shared noise); a metric
    with no interval (SSIM, a report made with --bootstrap 0) uses its value."""
    end = 0 if op == ">=" else 1
    delta_ci = getattr(row, f"{metric}_delta_ci", None) if relative else None
    if delta_ci is not None and getattr(ref, metric, None) is not None:
        return getattr(ref, metric) + delta_ci[end]
    ci = getattr(row, f"{metric}_ci", None)
    return ci[end] if ci is not None else getattr(row, metric)


def meets(row: Row, ref: Row, budget: str) -> bool:
    """Whether the row is shown to meet every clause of the budget (relative clauses: times the uncached
    value): each clause's deciding interval (``bound``) lies inside it, not only its point estimate."""
    for metric, op, value, relative in parse_budget(budget):
        if relative:
            base = getattr(ref, metric)
            if base is None:
                raise ValueError(f"budget {budget!r} is relative to uncached, which has no {metric} "
                                 "(use an absolute value)")
            value *= base
        q = bound(row, ref, metric, op, relative)
        if q is None or not (q >= value if op == ">=" else q <= value):
            return False
    return True


def best_under_budget(rows: list[Row], budget: str) -> dict[str, Row]:
    """Per method and peer, the fastest setting (wall-clock) shown to meet the quality budget."""
    for metric, *_ in parse_budget(budget):
        if not any(getattr(r, metric) is not None for r in rows):
            raise ValueError(f"budget on {metric!r}, but this benchmark did not measure it")
    best: dict[str, Row] = {}
    for row in rows[1:]:
        if row.error or row.wall_speedup is None or not meets(row, rows[0], budget):
            continue
        key = f"{row.kind}:{row.method}"
        if key not in best or row.wall_speedup > best[key].wall_speedup:
            best[key] = row
    return best


# --------------------------------------------------------------------------- markdown


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(x, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _ci(x, ci, spec: str, star: bool | None = None) -> str:
    """'12.3 [11.0, 13.9]', with '*' when a difference to uncached is significant."""
    if x is None:
        return "-"
    text = format(x, spec)
    if ci is not None:
        text += f" [{format(ci[0], spec)}, {format(ci[1], spec)}]"
    return text + (" *" if star else "")


def _compiled_peers(rows: list) -> str:
    """How the compiled columns treat peers: compiled whole with their hooks (this code), or eager only (reports
    written before peers were compiled, whose peer rows have no compiled time)."""
    peers = [r for r in rows if r.kind == "peer" and not r.error]
    if not peers:
        return ""
    if all(r.compiled_wall_s is None for r in peers):
        return " Peers are timed eager only."
    return " A peer is compiled whole with its hooks, on a copy of the transformer that shares its weights."


def _compile_failures(rows: list) -> str:
    """The settings that ran eager but failed compiled (``--compile``), each with its error."""
    failed = [f"{r.method} `{r.setting}` ({r.extra['compiled_error']})" for r in rows if r.extra.get("compiled_error")]
    return " Failed compiled (eager columns only): " + "; ".join(failed) + "." if failed else ""


def _recompiled(rows: list) -> str:
    """Whether dynamo built graphs during the timed rounds (their time then includes compiling)."""
    counts = [(r, r.extra.get("compiled_graphs_after_warmup")) for r in rows if r.compiled_wall_s is not None]
    if not counts or any(n is None for _, n in counts):  # reports from before the count was kept per row
        return ""
    late = [f"{r.method} `{r.setting}` ({n})" for r, n in counts if n]
    return (" Dynamo built graphs during the timed rounds, so those times include compiling: " + ", ".join(late) + "."
            if late else " Dynamo built no graph during the timed rounds.")


def report_markdown(report: dict) -> str:
    rows = [Row(**r) for r in report["rows"]]
    header = ["kind", "method", "setting", "GFLOPs/img", "plan GFLOPs/img", "FLOP x", "wall s/batch", "wall x",
              "cache MiB", "plan %",
              "PSNR dB", "SSIM", "featerr", "FD [95% CI]", "FD - uncached", "accuracy", "acc - uncached"]
    table = [[r.kind, r.method, f"`{r.setting}`", _fmt(r.gflops_per_image, ".2f"),
              _fmt(r.plan_gflops_per_image, ".3f"), _fmt(r.flop_speedup, ".2f"),
              _fmt(r.wall_s, ".3f"), _fmt(r.wall_speedup, ".2f"), _fmt(r.cache_mib, ".2f"),
              _fmt(r.extra.get("planning_share"), ".1%"), _ci(r.psnr, r.psnr_ci, ".2f"), _fmt(r.ssim, ".4f"),
              _ci(r.featerr, r.featerr_ci, ".3f"), _ci(r.fd, r.fd_ci, ".2f"),
              _ci(r.fd_delta, r.fd_delta_ci, "+.2f", r.fd_significant), _ci(r.accuracy, r.accuracy_ci, ".3f"),
              _ci(r.accuracy_delta, r.accuracy_delta_ci, "+.3f", r.accuracy_significant)]
             for r in rows if not r.error]
    if any(r.consistency is not None for r in rows):  # clips: the temporal measures
        header += ["consistency", "motion err"]
        for line, r in zip(table, [r for r in rows if not r.error]):
            line += [_ci(r.consistency, r.consistency_ci, ".3f"), _fmt(r.motion_err, ".3f")]
    if any(r.compiled_wall_s is not None for r in rows):  # --compile: beside the eager columns
        header += ["compiled s/batch", "compiled x"]
        for line, r in zip(table, [r for r in rows if not r.error]):
            line += [_fmt(r.compiled_wall_s, ".3f"), _fmt(r.compiled_wall_speedup, ".2f")]
    cfg = report["config"]
    lines = [f"# ditcache bench: {report['model']} ({report['transformer']})", "",
             f"{cfg['seeds']} seeds, {cfg['steps']} steps, batch {cfg['batch']}, {report['processes']} process(es), "
             f"{threads_text(report)}, device {report['device']}; wall-clock = median of {cfg['repeats']} "
             "interleaved runs of one batch; plan % = share of the generation spent planning on the host "
             "(scores, k-means); "
             + ("plan GFLOPs/img = FLOPs of planning (scores, k-means, verification), included in GFLOPs/img and "
                "FLOP x" if report.get("flops_include_planning") else
                "this report predates counted planning FLOPs: its FLOP x leaves planning out")
             + f". Intervals: 95% bootstrap over seeds ({cfg['bootstrap']} resamples), paired "
             "for differences to uncached; * = the difference's interval excludes 0. featerr = mean distance to "
             "the uncached image in the classifier's feature space, relative. Versions: "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".", "",
             markdown_table(header, table)]
    if cfg.get("compile"):
        ref = rows[0]
        gain = (f"; the compiled uncached model is {ref.wall_s / ref.compiled_wall_s:.2f}x the eager one"
                if ref.wall_s and ref.compiled_wall_s else "")
        lines += ["", f"Compiled columns: `torch.compile(transformer, backend={cfg['compile']!r})`, median of "
                  f"{cfg['repeats']} interleaved rounds after a warm-up round that pays the compilation; compiled x "
                  f"is against the compiled uncached model{gain}." + _compiled_peers(rows) + _recompiled(rows)
                  + _compile_failures(rows)]
    failed = [r for r in rows if r.error]
    if failed:
        lines += ["", "## Settings that could not run", ""]
        lines += [f"- {r.kind} {r.method} `{r.setting}`: {r.error}" for r in failed]
    if "budget" in report:
        budget, rounds = report["budget"]["budget"], cfg["repeats"]
        lines += ["", f"## Fastest setting per method within the budget `{budget}`", "",
                  f"Within: every clause's 95% interval lies inside the budget. Wall-clock: median of {rounds} "
                  "interleaved round(s)" + ("; fewer than 3, so this order is not a ranking." if rounds < 3
                                             else "."), ""]
        best = best_under_budget(rows, budget)  # (recomputed: reports before the interval rule kept point values)
        if not best:
            lines.append("No setting is shown to meet the budget.")
        lines += [f"- {k}: `{r.setting}` at {r.wall_speedup:.2f}x wall-clock, {r.flop_speedup:.2f}x FLOPs"
                  for k, r in sorted(best.items(), key=lambda kv: -kv[1].wall_speedup)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- files


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def write(out_dir: Path, report: dict, rows: list[Row], subject, ref, images_of: dict, steps: int) -> None:
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "report.md").write_text(report_markdown(report))
    pareto_plot(rows, out_dir / "pareto.png", title=f"{subject.name}: {steps} steps")
    video = ref.dim() == 5
    if video or (ref.dim() == 4 and ref.shape[1] == 1):
        from ..data import CLASSES
        from ..viz import labelled_animation, labelled_grid, save_gif

        by_method: dict[str, list[tuple[str, torch.Tensor]]] = {}
        for i, images in images_of.items():
            row = rows[i + 1]
            by_method.setdefault(f"{row.kind}_{row.method}", []).append((row.setting, images[:10]))
        captions = [CLASSES[s % 10] for s in range(10)]
        for key, grid_rows in by_method.items():
            grid_rows = [("uncached", ref[:10])] + grid_rows
            if video:
                save_gif(labelled_animation(grid_rows, captions), out_dir / f"clips_{_slug(key)}.gif")
            else:
                labelled_grid(grid_rows, captions).save(out_dir / f"grid_{_slug(key)}.png")


def pareto_front(points: list[tuple[float, float]], lower_is_better: bool) -> list[tuple[float, float]]:
    """The points no other point beats in both speedup (higher) and quality, sorted by speedup."""
    front = []
    for s, q in points:
        dominated = any(s2 >= s and (q2 <= q if lower_is_better else q2 >= q) and (s2, q2) != (s, q)
                        for s2, q2 in points)
        if not dominated:
            front.append((s, q))
    return sorted(front)


def pareto_plot(rows: list[Row], path: Path, title: str = "") -> None:
    """Wall-clock speedup vs FD, vs featerr and vs PSNR (where measured), one curve per method and peer,
    with each panel's Pareto front over all settings drawn in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [m for m in ("fd", "featerr", "psnr") if any(getattr(r, m) is not None for r in rows[1:])]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    groups: dict[str, list[Row]] = {}
    for r in rows[1:]:
        if not r.error and r.wall_speedup is not None:
            groups.setdefault(f"{r.method}" + (" (peer)" if r.kind == "peer" else ""), []).append(r)
    labels = {"fd": "FD in classifier space (lower is better)", "featerr": "feature error vs uncached (lower)",
              "psnr": "PSNR vs uncached, dB (higher)"}
    for ax, metric in zip(axes[0], panels):
        everything = []
        for label, rs in sorted(groups.items()):
            pts = sorted((r.wall_speedup, getattr(r, metric)) for r in rs if getattr(r, metric) is not None)
            everything += pts
            if pts:
                ax.plot(*zip(*pts), marker="o" if "(peer)" not in label else "s",
                        linestyle="-" if "(peer)" not in label else "--", label=label)
        front = pareto_front(everything, lower_is_better=metric != "psnr")
        if front:
            ax.plot(*zip(*front), color="grey", linewidth=6, alpha=0.25, zorder=0, label="Pareto front")
        ref = getattr(rows[0], metric)
        if ref is not None:  # uncached: on the FD axis only (PSNR / featerr against itself are off the axes)
            ax.axhline(ref, color="grey", linewidth=0.8, linestyle=":")
            ax.plot([1.0], [ref], "k*", markersize=10, label="uncached")
            if rows[0].fd_ci is not None and metric == "fd":
                ax.axhspan(*rows[0].fd_ci, color="grey", alpha=0.15)
        ax.set_xlabel("wall-clock speedup vs uncached")
        ax.set_ylabel(labels[metric])
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

