"""What do lean blocks buy? The same methods with the lean path on and off, timed side by side.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/lean.py [--models dit256 flux256] [--batch 16] [--repeats 3]
        [--threads 2] [--methods 'hyca:interval=7' 'taylorseer:interval=6,order=1' ...] [--switch lean|dense]

A block with a lean rule (``BlockSpec.lean``: diffusers' BasicTransformerBlock, FLUX.1's double-stream block)
builds its output from the cached branch outputs on a call where every branch reuses or forecasts, skipping the
LayerNorms and modulations that only feed the skipped branches; FLUX.1's single-stream blocks (whole-block sites)
compute their gate without the norm of their input; on a call where attention forecasts and the MLP computes a
token subset (ClusCa's partial steps), the MLP's norm and modulation run on the chosen rows only (the rules'
``partial``). "off" runs every block's own forward (the engine's
``executor.lean = False``), as before the change. Per model, uncached, each method with lean on and each with
lean off run round-robin in one process (one warm-up round, then the median of --repeats), on the same labels
and seeds. Printed: wall x against uncached both ways, the lean gain (off time / on time) and the largest
pixel difference between the two ways' images (rounding: a fused multiply-add instead of a multiply then add).

``--switch dense`` times the lean path with its token streams copied contiguous first and as the model laid
them out (``executor.dense``; DiT's patch embedding leaves them channels-first), lean on in both: same images.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import ditcache  # noqa: E402
from ditcache.bench import markdown_table  # noqa: E402
from ditcache.methods import parse_method  # noqa: E402
from ditcache.methods.artifacts import for_model  # noqa: E402

DEFAULT_METHODS = ["hyca:interval=7", "taylorseer:interval=6,order=1", "fora:interval=5"]


def generate(model, labels, steps: int, method, on: bool, switch: str = "lean") -> torch.Tensor:
    """One timed generation with the executor's ``switch`` (lean or dense) on or off; ``method`` None: the plain
    model, no hooks."""
    if method is None:
        return model.generate(labels, steps=steps, seed=0)
    with ditcache.cached(model.transformer, method, count_flops=False) as run:
        setattr(run.executor, switch, on)
        return model.generate(labels, steps=steps, seed=0)


def measure(name: str, methods: list[str], batch: int, steps: int, repeats: int, switch: str = "lean") -> list[list]:
    model = ditcache.load_default(name)
    labels = torch.arange(batch) % 10
    chosen = {m: for_model(parse_method(m), name, m) for m in methods}  # learned methods: this model's artifact
    todo = [("uncached", None, True)] + [(m, chosen[m], flag) for m in methods for flag in (True, False)]
    times: dict[tuple, list[float]] = {(k, flag): [] for k, _, flag in todo}
    images: dict[tuple, torch.Tensor] = {}
    for round_ in range(repeats + 1):  # round 0 warms up
        for key, method, flag in todo:
            start = time.perf_counter()
            images[key, flag] = generate(model, labels, steps, method, flag, switch)
            wall = time.perf_counter() - start
            if round_:
                times[key, flag].append(wall)
            print(f"  {name} round {round_}: {key} {switch} {'on' if flag else 'off'} {wall:.2f} s", flush=True)
    ref = statistics.median(times["uncached", True])
    rows = []
    for key in methods:
        on, off = statistics.median(times[key, True]), statistics.median(times[key, False])
        diff = (images[key, True] - images[key, False]).abs().max().item()
        rows.append([name, key, f"{ref / off:.2f}", f"{ref / on:.2f}", f"{off / on:.3f}",
                     f"{min(times[key, False]) / max(times[key, True]):.3f}", f"{diff:.1e}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["dit256", "flux256"])
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--switch", choices=("lean", "dense"), default="lean", help="the executor switch timed on/off")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    torch.set_num_threads(args.threads)
    for name in args.models:  # every method binds on every model (learned ones: an artifact) before any timing
        model = ditcache.load_default(name)
        for m in args.methods:
            try:
                ditcache.apply(model.transformer, for_model(parse_method(m), name, m), count_flops=False).remove()
            except (FileNotFoundError, ValueError) as err:
                ap.error(f"{m} cannot run on {name}: {err}")
    rows = []
    for name in args.models:
        rows += measure(name, args.methods, args.batch, args.steps, args.repeats, args.switch)
    sw = args.switch
    print(f"\n{args.threads} thread(s), batch {args.batch}, {args.steps} steps, median of {args.repeats} "
          f"interleaved rounds; gain = {sw} off time / {sw} on time (worst case: slowest on vs fastest off)\n")
    print(markdown_table(["model", "method", f"wall x {sw} off", f"wall x {sw} on", "gain", "gain worst case",
                          "max |diff|"], rows))


if __name__ == "__main__":
    main()
