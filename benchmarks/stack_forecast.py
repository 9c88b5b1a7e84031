"""Forecasting the whole block stack against forecasting each branch: what the engine's per-branch hooks buy.

    python benchmarks/stack_forecast.py --model dit256 --seeds 100 --threads 2

Between full steps, ditcache's TaylorSeer forecasts each branch's pre-gate output and the block applies the
step's own gate and residual (design.md). The cheapest alternative keeps one tensor per step instead of one per
site: the residual the whole block stack adds to its input, r = h_out - h_in (the gates inside it), extrapolated
with the same Taylor series from the same full steps; on a forecast step every block passes its input through
and the last adds h_in + forecast(r). Both use the patch embedding of the step's own input; they differ only in
whether the gates are the step's own (per branch) or extrapolated with the rest (stack). The stack's forecast
reads (order + 1) tensors a step instead of (order + 1) per site, so its cached steps cost close to nothing.

Prints, per interval and order: PSNR against the uncached images of the same seeds, the stack's paired PSNR
difference to TaylorSeer at the same full steps, and FD - uncached, with 95% bootstrap intervals over seeds (200
resamples, the bench's); then the wall-clock of uncached, TaylorSeer and the stack, interleaved rounds.

``--contraction`` times, instead, an exact way to read each stored factor once a step with the step's own gates:
the stack's output h_in + sum_s g_s * (A_s + w1 F1_s + w2 F2_s) as one batched matrix product over factors kept
in a (B*D, N, 3S) layout, against the per-site passes the engine makes (a forecast, then the block's gated add),
on random tensors of the model's shapes (CFG batch, tokens, width, two branch sites per block).

The stack policy is this script's (a context manager patching the block instances' forwards and restoring them),
not a shipped method. It applies to models whose ``transformer_blocks`` take the hidden states first and return
one tensor (DiT, PixArt); others are refused.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time

from process_settings import add_wait_policy, apply_wait_policy, check_wait_policy

_POLICY = apply_wait_policy()  # before torch loads: OpenMP reads it once

import torch  # noqa: E402
from schedule_shape import interval, psnr_each  # noqa: E402

from ditcache.bench import markdown_table, time_interleaved  # noqa: E402
from ditcache.bench.running import generate  # noqa: E402
from ditcache.bench.subjects import load_subject  # noqa: E402
from ditcache.methods import TaylorSeer  # noqa: E402
from ditcache.plan import kept_order  # noqa: E402
from ditcache.quality import Quality  # noqa: E402

WARMUP = 2  # TaylorSeer's default warm-up, both policies'


@contextlib.contextmanager
def stack_forecast(model, full: set[int], order: int):
    """One generation with the block stack's residual forecast on the steps not in ``full`` (TaylorSeer's
    backward differences in step indices and its derivative guard, as ``forecast.Taylor``)."""
    blocks = getattr(model, "transformer_blocks", None)
    if blocks is None or len(blocks) < 2 or hasattr(model, "single_transformer_blocks"):
        raise SystemExit(f"stack_forecast: {type(model).__name__} has no single stack of one-tensor blocks")
    state = {"step": -1, "h_in": None, "factors": [], "node": None}  # factors: [r, dr, d2r, ...] at node

    def first(module, args, kwargs):  # a model call starts: one per step (CFG halves share the batch)
        state["step"] += 1
        state["h_in"] = args[0] if args else kwargs["hidden_states"]               # (B, N, D)

    def wrap(i: int, forward):
        last = i == len(blocks) - 1

        def run(*args, **kwargs):
            step = state["step"]
            if step in full:
                out = forward(*args, **kwargs)
                if last:
                    r = out - state["h_in"]                                          # (B, N, D)
                    keep = kept_order(step, WARMUP, order)
                    old, node = state["factors"], state["node"]
                    new = [r]
                    if keep > 0 and node is not None:
                        for k in range(min(len(old), keep)):
                            new.append((new[k] - old[k]) / (step - node))
                    state["factors"], state["node"] = new, step
                return out
            x = args[0] if args else kwargs["hidden_states"]
            if not last:
                return x                                                             # pass the input through
            d = step - state["node"]
            out = state["h_in"] + state["factors"][0]
            for k, f in enumerate(state["factors"][1:], start=1):
                out.add_(f, alpha=d ** k / math.factorial(k))
            return out

        return run

    hook = blocks[0].register_forward_pre_hook(first, with_kwargs=True)
    for i, block in enumerate(blocks):
        block.forward = wrap(i, block.forward)
    try:
        yield
    finally:
        hook.remove()
        for block in blocks:
            del block.forward  # the instance attribute: the class's forward again


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="dit256", help="a shipped default with one stack of blocks (dit, dit256)")
    ap.add_argument("--seeds", type=int, default=100, help="images per quality row (0: timing only)")
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--intervals", type=int, nargs="+", default=[6, 7])
    ap.add_argument("--orders", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (0: no timing)")
    ap.add_argument("--timing-batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--contraction", action="store_true", help="time the one-pass contraction (see above) only")
    add_wait_policy(ap)
    args = ap.parse_args()
    check_wait_policy(args, ap, _POLICY)
    torch.set_num_threads(args.threads)
    subject = load_subject(args.model)
    if args.contraction:
        contraction(args, subject)
        return
    if args.seeds > 0:
        quality_rows(args, subject)
    if args.rounds > 0:
        timing(args, subject)


def quality_rows(args, subject) -> None:
    """PSNR, its paired difference (stack - per branch) and FD - uncached for each interval and order."""
    seeds = list(range(args.seeds))
    batches = [seeds[i:i + args.batch] for i in range(0, len(seeds), args.batch)]

    def images(method=None, stack=None) -> torch.Tensor:
        outs = []
        for b in batches:
            with stack() if stack is not None else contextlib.nullcontext():
                outs.append(generate(subject, b, args.steps, method=method, count_flops=False)[0])
        return torch.cat(outs)

    start = time.perf_counter()
    ref = images()
    quality = Quality(ref, subject.labels(seeds), bootstrap=200)
    rows = []
    for n in args.intervals:
        for order in args.orders:
            method = TaylorSeer(interval=n, order=order, warmup=WARMUP)
            full = set(method.full_steps(args.steps))
            out = images(method)
            per_branch, score_branch = psnr_each(out, ref), quality.score(out)
            out = images(stack=lambda full=full, order=order: stack_forecast(subject.transformer, full, order))
            per_stack, score_stack = psnr_each(out, ref), quality.score(out)
            for name, psnr, score, diff in (("per branch (TaylorSeer)", per_branch, score_branch, None),
                                            ("whole stack", per_stack, score_stack, per_stack - per_branch)):
                m, lo, hi = interval(psnr, quality.resamples)
                d = "-" if diff is None else "{:+.2f} [{:+.2f}, {:+.2f}]".format(*interval(diff, quality.resamples))
                fd, (flo, fhi) = score["fd_delta"], score["fd_delta_ci"]
                rows.append([n, order, len(full), name, f"{m:.2f} [{lo:.2f}, {hi:.2f}]", d,
                             f"{fd:+.2f} [{flo:+.2f}, {fhi:+.2f}]"])
            print(f"N {n} order {order}: per branch {per_branch.mean():.2f} dB, stack {per_stack.mean():.2f} dB "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\n{args.model}, {args.steps} steps, {args.seeds} seeds, {args.threads} thread(s); uncached FD "
          f"{quality.ref_fd:.2f}\n")
    print(markdown_table(["interval N", "order", "full steps", "forecast", "PSNR dB [95% CI]",
                          "stack - per branch [95% CI]", "FD - uncached [95% CI]"], rows))


def timing(args, subject) -> None:
    """Uncached, TaylorSeer and the stack at the first interval and the last order, interleaved rounds."""
    n, order = args.intervals[0], args.orders[-1]
    method = TaylorSeer(interval=n, order=order, warmup=WARMUP)
    full = set(method.full_steps(args.steps))
    timed = list(range(args.timing_batch))
    runs = {"uncached": lambda: generate(subject, timed, args.steps, count_flops=False),
            f"TaylorSeer N{n} order {order}": lambda: generate(subject, timed, args.steps, method=method,
                                                               count_flops=False)}

    def stacked():
        with stack_forecast(subject.transformer, full, order):
            generate(subject, timed, args.steps, count_flops=False)

    runs[f"whole stack N{n} order {order}"] = stacked
    seconds = time_interleaved(runs, repeats=args.rounds)  # a warm-up round, then A B C A B C ...
    base = statistics.median(seconds["uncached"])
    print(f"\nwall-clock, batch {args.timing_batch}, {args.threads} thread(s), median of {args.rounds} interleaved "
          f"rounds (wait policy {_POLICY}):\n")
    print(markdown_table(["run", "s per generation (rounds)", "wall x"],
                         [[name, f"{statistics.median(v):.2f} ({', '.join(f'{x:.2f}' for x in v)})",
                           f"{base / statistics.median(v):.2f}"] for name, v in seconds.items()]))


def contraction(args, subject) -> None:
    """Per-site passes against one batched contraction for an order-2 forecast of every site with its gate,
    interleaved rounds of 20 calls each; checks that both give the same sum first."""
    model = subject.transformer
    n = (model.config.sample_size // model.config.patch_size) ** 2
    d = model.config.num_attention_heads * model.config.attention_head_dim
    sites, b = 2 * len(model.transformer_blocks), 2 * args.timing_batch   # attn1 and ff per block; CFG halves
    g = torch.Generator().manual_seed(0)
    a, f1, f2 = ([torch.randn(b, n, d, generator=g) for _ in range(sites)] for _ in range(3))  # (B, N, D) each
    gates = [torch.randn(b, 1, d, generator=g) for _ in range(sites)]                          # (B, 1, D)
    w1, w2 = ([torch.randn(d, generator=g) for _ in range(sites)] for _ in range(2))         # (D,) per channel
    x0 = torch.randn(b, n, d, generator=g)

    def per_site() -> torch.Tensor:
        x = x0
        for s in range(sites):
            f = torch.addcmul(a[s], w1[s], f1[s]).addcmul_(w2[s], f2[s])   # the forecast (B, N, D)
            x = torch.addcmul(x, gates[s], f)                               # the block's gated add
        return x

    stacked = torch.empty(b, d, n, 3 * sites)                              # (B, D, N, 3S), written at full steps
    for s in range(sites):
        for k, t in enumerate((a[s], f1[s], f2[s])):
            stacked[..., 3 * s + k] = t.transpose(1, 2)

    def one_pass() -> torch.Tensor:
        coef = torch.stack([c for s in range(sites) for c in (gates[s][:, 0], gates[s][:, 0] * w1[s],
                                                               gates[s][:, 0] * w2[s])], dim=-1)  # (B, D, 3S)
        out = torch.matmul(stacked.view(b * d, n, 3 * sites), coef.view(b * d, 3 * sites, 1))  # (B*D, N, 1)
        return x0 + out.view(b, d, n).transpose(1, 2)

    err = float((per_site() - one_pass()).abs().max() / per_site().abs().max())
    def twenty(fn) -> float:  # ms per call over 20 calls after one untimed call (its own duration, see below)
        fn()
        t = time.perf_counter()
        for _ in range(20):
            fn()
        return (time.perf_counter() - t) / 20 * 1e3

    runs = {"per-site passes (the engine's)": lambda: twenty(per_site),
            "one batched contraction": lambda: twenty(one_pass)}
    seconds = time_interleaved(runs, repeats=max(args.rounds, 1), warmup=0)  # each reports its own ms
    print(f"{args.model}: {sites} sites of ({b}, {n}, {d}), order 2 with per-channel weights (HyCa's form); "
          f"largest relative difference of the two sums {err:.1e}; {args.threads} thread(s), wait policy {_POLICY}\n")
    print(markdown_table(["way", "ms per cached step (rounds)"],
                         [[name, f"{statistics.median(v):.2f} ({', '.join(f'{x:.2f}' for x in v)})"]
                          for name, v in seconds.items()]))


if __name__ == "__main__":
    main()
