"""Benchmarks: every method and every peer on one model, same seeds and sampler, one report.

``run_bench(BenchConfig(...))`` generates the uncached reference and each setting of each method and
peer for the same seeds; measures wall-clock (interleaved round-robin, medians, ratios to uncached),
FLOPs (torch's counter), cache bytes, planning share and quality with bootstrap intervals (FD in
classifier space and class accuracy for the shipped Fashion-MNIST defaults; PSNR, SSIM and the paired
feature error against the uncached output), and writes ``report.md``, ``report.json``, ``pareto.png``
and one image grid per method. Under ``torchrun`` the seeds are sharded over processes (whole batches,
so every image is computed exactly as in one process) and gathered on rank 0, which writes the report.

The parts, each readable on its own: ``settings`` (what is swept, budgets), ``subjects`` (the model and
its inputs), ``running`` (generations and timing), ``quality`` (measures and intervals), ``report``
(rows, markdown, plots, grids); ``pipeline``: the same on a user's own diffusers pipeline,
``compare(pipe, prompts, methods=..., peers=..., seeds=..., steps=...)``.
"""

from .pipeline import compare
from .quality import Quality
from .report import Row, best_under_budget, markdown_table, meets, pareto_front, pareto_plot, report_markdown
from .running import generate, median, relative_error, run_bench, time_interleaved
from .settings import BenchConfig, method_settings, parse_budget, sweeps
from .subjects import Subject, load_subject

__all__ = [
    "BenchConfig", "Quality", "Row", "Subject", "best_under_budget", "compare", "generate", "load_subject",
    "markdown_table", "median", "meets", "method_settings", "pareto_front", "pareto_plot", "parse_budget",
    "relative_error", "report_markdown", "run_bench", "sweeps", "time_interleaved",
]
