"""Issue 24 benchmark: what `ditcache bench --pipeline` adds over the same work through the Python API.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/cli_overhead.py [--rounds 5] [--pipeline FOLDER] [--threads 1]

A tiny Flux pipeline (``ditcache.pipelines``) is saved with save_pretrained into a temporary folder (or
``--pipeline`` names one). Each round runs, in this one process and alternating which goes first:

- the CLI: ``ditcache.cli.main(["bench", "--pipeline", FOLDER, ...])`` (argument parsing, the checks before
  loading, loading, ``bench.compare``, the report files, the printed table);
- the API: ``load_pipeline(FOLDER)``, ``bench.compare(pipe, ...)`` with the same prompts, methods, peer, seeds,
  steps and timing rounds, and the same report files.

One untimed round of each comes first (imports, first calls). Loading is timed on its own in both (the same
``load_pipeline``), and the comparison is of the rest: the median over rounds of (total - loading), CLI against
API, in wall-clock and in this process's CPU time (``time.process_time``: steadier when other processes share
the cores). The issue's bar: the CLI adds no more than 5%.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import ditcache.userpipe  # noqa: E402
from ditcache.bench import markdown_table  # noqa: E402

PROMPTS = ["a red dress", "a blue coat"]
WORK = dict(methods="fora:interval=2,taylorseer:interval=3", peers="fbcache", seeds=4, steps=10, height=16,
            width=16, repeats=1, bootstrap=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pipeline", default=None, help="a saved pipeline folder (default: the tiny Flux, saved now)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="ditcache-cli-overhead-"))
    folder = args.pipeline
    if folder is None:
        from ditcache.pipelines import tiny_pipeline

        folder = str(work / "flux")
        tiny_pipeline("flux").save_pretrained(folder)

    loads: list[tuple[float, float]] = []  # (wall s, CPU s) of each load
    real_load = ditcache.userpipe.load_pipeline

    def timed_load(*a, **k):
        wall, cpu = time.perf_counter(), time.process_time()
        pipe = real_load(*a, **k)
        loads.append((time.perf_counter() - wall, time.process_time() - cpu))
        return pipe

    ditcache.userpipe.load_pipeline = timed_load  # the CLI and the API load through the same function
    rows = []

    def once(which: str, out: Path) -> tuple[float, float, tuple[float, float]]:
        """(wall s, CPU s, loading (wall s, CPU s)) of one CLI or API run."""
        wall, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            (run_cli if which == "cli" else run_api)(folder, out, args.threads)
        return time.perf_counter() - wall, time.process_time() - cpu, loads[-1]

    try:
        for which in ("cli", "api"):  # warm-up: imports and first calls, untimed
            once(which, work / f"warmup-{which}")
        for r in range(args.rounds):
            got = {which: once(which, work / f"{which}-{r}")
                   for which in (("cli", "api") if r % 2 == 0 else ("api", "cli"))}
            rows.append((r, got["cli"], got["api"]))
    finally:
        ditcache.userpipe.load_pipeline = real_load
    print(markdown_table(["round", "CLI wall s", "CLI CPU s", "CLI loading s", "API wall s", "API CPU s",
                          "API loading s"],
                         [[r, f"{c[0]:.2f}", f"{c[1]:.2f}", f"{c[2][0]:.3f}", f"{a[0]:.2f}", f"{a[1]:.2f}",
                           f"{a[2][0]:.3f}"] for r, c, a in rows]))
    print(f"\nbesides loading, median of {args.rounds} rounds:")
    for k, label in ((0, "wall-clock"), (1, "CPU time")):
        cli_rest = statistics.median(c[k] - c[2][k] for _, c, _ in rows)
        api_rest = statistics.median(a[k] - a[2][k] for _, _, a in rows)
        print(f"  {label}: CLI {cli_rest:.2f} s, API {api_rest:.2f} s: the CLI adds "
              f"{100 * (cli_rest / api_rest - 1):+.1f}% (bar: <= 5%)")
    print(f"work: {len(PROMPTS)} prompts x {WORK['seeds']} seeds, {WORK['steps']} steps, methods {WORK['methods']}, "
          f"peer {WORK['peers']}; {args.threads} thread(s), torch {torch.__version__}")


def run_cli(folder: str, out: Path, threads: int) -> None:
    from ditcache.cli import main as cli

    argv = ["bench", "--pipeline", folder, "--out", str(out), "--threads", str(threads),
            "--methods", WORK["methods"], "--peers", WORK["peers"], "--seeds", str(WORK["seeds"]),
            "--steps", str(WORK["steps"]), "--height", str(WORK["height"]), "--width", str(WORK["width"]),
            "--repeats", str(WORK["repeats"]), "--bootstrap", str(WORK["bootstrap"])]
    for p in PROMPTS:
        argv += ["--prompt", p]
    assert cli(argv) == 0


def run_api(folder: str, out: Path, threads: int) -> None:
    from ditcache.bench import compare
    from ditcache.bench.pipeline import report_dict, write_report

    pipe = ditcache.userpipe.load_pipeline(folder)
    kept: dict = {}
    rows = compare(pipe, PROMPTS, methods=WORK["methods"], peers=WORK["peers"], seeds=WORK["seeds"],
                   steps=WORK["steps"], height=WORK["height"], width=WORK["width"], repeats=WORK["repeats"],
                   bootstrap=WORK["bootstrap"], keep=kept)
    info = {"pipeline": type(pipe).__name__, "transformer": type(pipe.transformer).__name__, "threads": threads,
            "device": "cpu", "dtype": "float32", "versions": {}, "missing": kept["missing"],
            "config": {"prompts": PROMPTS, "seeds": list(range(WORK["seeds"])), "steps": WORK["steps"],
                       "repeats": WORK["repeats"], "bootstrap": WORK["bootstrap"]}}
    write_report(out, report_dict(rows, info), rows, kept, PROMPTS, list(range(WORK["seeds"])))


if __name__ == "__main__":
    main()
