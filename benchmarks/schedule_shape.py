"""Where the full steps go: TaylorSeer's and HyCa's even spacing against spacings that crowd the full steps
towards the start or the end of the run, and against even spacings that stop before the run's last steps,
each at the same number of full steps (so the same FLOPs).

    python benchmarks/schedule_shape.py --model dit256 --seeds 100 --threads 2

With F full steps in a run of n and a warm-up of W, steps 0..W-1 are full and the other k = F - W sit at
W - 1 + round((L - W + 1) (i / k)^p), i = 1..k: p = 1 spaces them evenly up to the last full step L, p < 1
crowds them towards L, p > 1 towards the warm-up; L < n - 1 leaves the run's last n - 1 - L steps to
forecasts (the methods' ``tail``). Every other step forecasts every site, as the methods do between their
full steps.

Prints, per method and F, PSNR against the uncached images of the same seeds, its paired difference to the
even spacing ending on the last step (p = 1, L = n - 1), and FD - uncached, each with a 95% bootstrap
interval over seeds (200 resamples, the bench's).
"""

from __future__ import annotations

import argparse
import time

from process_settings import add_wait_policy, apply_wait_policy, check_wait_policy

_POLICY = apply_wait_policy()  # before torch loads: OpenMP reads it once

import torch  # noqa: E402

from ditcache import metrics  # noqa: E402
from ditcache.bench import markdown_table  # noqa: E402
from ditcache.bench.running import generate  # noqa: E402
from ditcache.bench.subjects import load_subject  # noqa: E402
from ditcache.methods import HyCa, TaylorSeer  # noqa: E402
from ditcache.methods.artifacts import load_artifact  # noqa: E402
from ditcache.plan import Action, Plan, kept_order  # noqa: E402
from ditcache.quality import Quality  # noqa: E402

WARMUP = 2  # leading full steps, both methods' here (TaylorSeer's default)


def spaced(full: int, power: float, last: int) -> list[int]:
    """The full steps: 0..WARMUP-1, then k = full - WARMUP more at WARMUP - 1 + round((last - WARMUP + 1)
    (i / k)^power), i = 1..k (the last of them at ``last``)."""
    k = full - WARMUP
    rest = {WARMUP - 1 + round((last - WARMUP + 1) * (i / k) ** power) for i in range(1, k + 1)}
    return sorted(set(range(WARMUP)) | rest)


def at_steps(base: type, full: list[int], **kwargs):
    """``base`` (TaylorSeer or HyCa) with its full steps at ``full`` instead of every interval-th step: the
    same forecasts, orders and derivative guard in between (a policy of this script, not a shipped method)."""

    class AtSteps(base):
        def full_steps(self, num_steps: int) -> list[int]:
            return list(full)

        def plan(self, ctx, sites, store):
            art = getattr(self, "_art", None)
            if art is not None:
                art.check_step(ctx.step, ctx.num_steps, ctx.timestep)  # HyCa: the calibration's model and sampler
            order = getattr(self, "order", 2)                             # HyCa forecasts with 2 differences
            if ctx.step in full:
                return [Plan(Action.FULL, order=kept_order(ctx.step, WARMUP, order))] * len(sites)
            return [Plan(Action.FORECAST, order=order)] * len(sites)

    return AtSteps(**kwargs)


def interval(values: torch.Tensor, resamples: torch.Tensor) -> tuple[float, float, float]:
    """Mean and 95% bootstrap interval of per-seed values (N,) over the given resamples (R, N)."""
    means = values[resamples].mean(1).double()
    lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return float(values.mean()), lo, hi


def psnr_each(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) images in [-1, 1] -> (N,) PSNR in dB, per image by the bench's ``metrics.psnr``."""
    return torch.tensor([metrics.psnr(x, y) for x, y in zip(a, b)], dtype=torch.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="dit256", help="a shipped image default (HyCa needs its calibration)")
    ap.add_argument("--methods", nargs="+", choices=("taylorseer", "hyca"), default=["taylorseer", "hyca"])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--full", type=int, nargs="+", default=[9, 8], help="full steps per run (F)")
    ap.add_argument("--powers", type=float, nargs="+", default=[0.8, 1.25],
                    help="spacings p other than even, each ending on the run's last step")
    ap.add_argument("--tails", type=int, nargs="+", default=[1, 3, 6, 9],
                    help="forecast tails n - 1 - L, each with even spacing")
    ap.add_argument("--threads", type=int, default=2)
    add_wait_policy(ap)
    args = ap.parse_args()
    check_wait_policy(args, ap, _POLICY)
    if min(args.full) <= WARMUP or max(args.full) > args.steps:
        ap.error(f"--full must lie in {WARMUP + 1}..{args.steps} (the warm-up and at least one more)")
    if min(args.tails, default=0) < 1 or max(args.tails, default=0) > args.steps - 2 * WARMUP:
        ap.error(f"--tails must lie in 1..{args.steps - 2 * WARMUP}")
    if "hyca" in args.methods:
        try:
            load_artifact(args.model, "hyca")
        except FileNotFoundError as e:  # before the uncached images, not after them
            ap.error(f"{e} (or leave hyca out: --methods taylorseer)")
    torch.set_num_threads(args.threads)
    subject = load_subject(args.model)
    seeds = list(range(args.seeds))
    batches = [seeds[i:i + args.batch] for i in range(0, len(seeds), args.batch)]

    def images(method=None) -> torch.Tensor:
        return torch.cat([generate(subject, b, args.steps, method=method, count_flops=False)[0] for b in batches])

    start = time.perf_counter()
    ref = images()
    quality = Quality(ref, subject.labels(seeds), bootstrap=200)
    specs = {"taylorseer": ("taylorseer (order 2)", TaylorSeer, dict(order=2, warmup=WARMUP)),
             "hyca": (f"hyca (artifact {args.model}, warm-up {WARMUP})", HyCa,
                      dict(artifact=args.model, warmup=WARMUP))}
    rows = []
    for name, cls, kw in (specs[m] for m in specs if m in args.methods):
        for full in args.full:
            even = None  # (N,) per-seed PSNR of the even spacing, which the other rows pair to

            def row(label: str, steps: list[int], method) -> list:
                out = images(method)
                psnr = psnr_each(out, ref)
                score = quality.score(out)
                m, lo, hi = interval(psnr, quality.resamples)
                d = None if even is None else interval(psnr - even, quality.resamples)
                fd, (flo, fhi) = score["fd_delta"], score["fd_delta_ci"]
                print(f"{name} F={full} {label}: PSNR {m:.2f} ({time.perf_counter() - start:.0f} s)", flush=True)
                return psnr, [name, full, label, " ".join(map(str, steps)), f"{m:.2f} [{lo:.2f}, {hi:.2f}]",
                              "-" if d is None else f"{d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}]",
                              f"{fd:+.2f} [{flo:+.2f}, {fhi:+.2f}]"]

            last = args.steps - 1
            variants = [(1.0, last)] + [(p, last) for p in args.powers if p != 1.0]
            variants += [(1.0, last - t) for t in args.tails]
            for power, end in variants:  # the even spacing ending on the last step first: the others pair to it
                steps = spaced(full, power, end)
                if len(steps) != full:  # two of the spaced steps rounded onto one
                    print(f"skipped: F={full} p={power:g} L={end} gives only {len(steps)} distinct full steps")
                    continue
                psnr, cell = row(f"p {power:g}, L {end}", steps, at_steps(cls, steps, **kw))
                even = psnr if even is None else even
                rows.append(cell)
    print(f"\n{args.model}, {args.steps} steps, {args.seeds} seeds, {args.threads} thread(s); uncached FD "
          f"{quality.ref_fd:.2f}\n")
    print(markdown_table(["method", "full steps F", "spacing", "full steps at", "PSNR dB [95% CI]",
                          "PSNR - even to the last step [95% CI]", "FD - uncached [95% CI]"], rows))


if __name__ == "__main__":
    main()
