"""What a ClusCa partial step costs besides its matrix products, lever by lever (issue 27, item 2).

    python benchmarks/partial_step.py [--threads 1 2] [--rounds 3] [--wait-policy=passive|default]

At the sizes of a 256-token default's MLP site (dit256: 256 tokens of width 128, K 16 clusters, batch 16
and 100 with their guidance halves: 32 and 200 rows), each pair below is timed interleaved in one process,
median of --rounds rounds of 50 calls after a warm-up, at each thread count:

- **edit, then forecast** against **forecast, then refresh**: a partial MLP site's output from its fresh rows
  (order 1, propagation gamma 0.005, the edited anchor kept). The engine's path for a forecaster that gives
  its terms (``tokens.rise_at``, ``tokens.edit_anchor``, ``forecast.common.apply_terms``: three full-size
  passes) against its path for any other (the forecast built first, then ``tokens.refresh``: five).
- **rows in place** against **rows after a copy**: 16 rows per sample read from a hidden state in the patch
  embedding's channels-first layout (DiT's), by ``tokens.gather_tokens`` against flattening it first.
- **draws per step** against **draws per site**: the tokens of dit256's 6 MLP sites, one per cluster, by
  ClusCa's one call per stream against one ``tokens.one_per_cluster`` call per site.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from process_settings import add_wait_policy, apply_wait_policy, check_wait_policy

_POLICY = apply_wait_policy()  # before torch loads: OpenMP reads it once

import torch  # noqa: E402

import ditcache  # noqa: E402
from ditcache import tokens as T  # noqa: E402
from ditcache.bench import markdown_table  # noqa: E402
from ditcache.forecast.common import apply_terms  # noqa: E402
from ditcache.plan import Site  # noqa: E402

N, D, K, GAMMA, W, SITES = 256, 128, 16, 0.005, 1.5, 6


def pairs(b: int) -> dict[str, tuple]:
    """name -> (new, old) callables at b rows of N tokens."""
    g = torch.Generator().manual_seed(0)
    anchor, factor = torch.randn(b, N, D, generator=g), torch.randn(b, N, D, generator=g)   # (B, N, D)
    labels = torch.randint(K, (b, N), generator=g)                                          # (B, N)
    idx = T.one_per_cluster(labels, K, g)                                                   # (B, K)
    fresh = torch.randn(b, K, D, generator=g)
    prop = (labels, K, GAMMA)
    terms = [(W, (factor,))]

    def edit_then_forecast():
        edited = T.edit_anchor(anchor, idx, fresh - T.rise_at(terms, 0, idx), prop)
        return edited, apply_terms((edited,), terms)[0]

    def forecast_then_refresh():
        return T.refresh(anchor, apply_terms((anchor,), terms)[0], idx, fresh, prop)

    hidden = torch.randn(b, D, N, generator=g).transpose(1, 2)                              # (B, N, D) view
    rows = T._flat_rows(idx, N)                                                               # (B * K,)

    def rows_in_place():
        return T.gather_tokens(hidden, idx)

    def rows_after_copy():
        return hidden.reshape(b * N, D).index_select(0, rows).view(b, K, D)

    state = {"labels": {"image": labels}, ("k", "image"): K}
    sites = [Site(name=f"mlp{i}", kind="mlp", layer=i, module=None, partial="tokens", index=i) for i in range(SITES)]
    clusca = ditcache.ClusCa()

    def draws_per_step():
        return clusca._picks(state, sites, torch.Generator().manual_seed(1))

    def draws_per_site():
        gen = torch.Generator().manual_seed(1)
        return [T.one_per_cluster(labels, K, gen) for _ in sites]

    # the two members of each pair give the same result (the timings compare equal work)
    for a, c in zip(edit_then_forecast(), forecast_then_refresh()):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)
    assert torch.equal(rows_in_place(), rows_after_copy())
    assert all(torch.equal(a, c) for a, c in zip(draws_per_step(), draws_per_site()))
    return {"partial MLP output": (edit_then_forecast, forecast_then_refresh),
            "16 rows of a channels-first state": (rows_in_place, rows_after_copy),
            "6 sites' token draws": (draws_per_step, draws_per_site)}


def per_call_ms(fn, calls: int = 50) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    add_wait_policy(ap)
    args = ap.parse_args()
    check_wait_policy(args, ap, _POLICY)
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset (libgomp default)')}")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch, b in ((16, 32), (100, 200)):
            for name, (new, old) in pairs(b).items():
                new(), old()  # warm-up
                times = {new: [], old: []}
                for _ in range(args.rounds):
                    for fn in (new, old):
                        times[fn].append(per_call_ms(fn))
                t_new, t_old = statistics.median(times[new]), statistics.median(times[old])
                rows.append([threads, batch, name, f"{new.__name__.replace('_', ' ')} {t_new:.3f}",
                             f"{old.__name__.replace('_', ' ')} {t_old:.3f}", f"{t_old / t_new:.2f}x"])
                print(f"  {threads} thread(s), batch {batch}: {name} done", flush=True)
    print()
    print(markdown_table(["threads", "batch", "what", "now, ms per call", "before, ms per call", "speed-up"], rows))


if __name__ == "__main__":
    main()
