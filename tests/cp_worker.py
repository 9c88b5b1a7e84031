"""One rank of ditcache under diffusers' context parallelism (tests/test_context_parallel.py starts two).

    python tests/cp_worker.py OUT.json SUITE        # with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set
    torchrun --nproc-per-node 2 tests/cp_worker.py OUT.json exact

A tiny Flux transformer (64 image tokens, 8 text tokens, 2 double- and 2 single-stream blocks) is sharded by
sequence over the ranks (Ulysses, gloo on the CPU); rank 0 also runs it in one process, with the same weights,
as the reference. Each case samples with the method applied, records the output's largest difference from the
reference, and every rank's plan sequence (all-gathered, so rank 0 can tell whether the ranks agreed). Rank 0
writes the results to OUT.json. Suites:

- ``exact``: NoCache and FORA(1) against the uncached reference; FORA, TaylorSeer, FreqCa, SpeCa, ToCa and
  ClusCa (both sharding rules) against the same method in one process; ditcache applied before
  ``enable_parallelism``; the buffers' layout; removal.
  Then SpeCa on inputs whose shards verify with errors either side of the threshold (the whole sequence's
  error decides: every rank takes the same next step).
- ``deadlock-unreduced``: that SpeCa case with the reduction taken out (a test-only patch of the executor's
  error in this process), which must not finish normally: the ranks' next steps differ and their attention
  collectives never pair up (gloo's timeout, CP_TIMEOUT_S, ends it).
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

torch.set_num_threads(1)

CONFIG = dict(patch_size=1, in_channels=4, out_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=8,
              num_attention_heads=2, joint_attention_dim=12, pooled_projection_dim=10, guidance_embeds=False,
              axes_dims_rope=(2, 2, 4))
STEPS = 12


def build():
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    model = FluxTransformer2DModel(**CONFIG).eval()
    return model


def inputs(batch: int = 1, model=None):
    """(noise, cond, uncond) for the Flux case, or for ``model`` (a zoo model: Wan's tiny case)."""
    from ditcache import zoo

    if model is not None and type(model).__name__ != "FluxTransformer2DModel":
        return zoo.conditioning("wan-tiny", batch, seed=1)
    return zoo.conditioning_for("FluxTransformer2DModel", CONFIG, batch, seed=1, latent=(64, 4))


def parallel(model, ditcache_first_method=None, degree: int = 2):
    """``model`` with Ulysses context parallelism over ``degree`` ranks (and, if given, ditcache applied first)."""
    from diffusers import ContextParallelConfig

    import ditcache

    run = ditcache.apply(model, ditcache_first_method, count_flops=False) if ditcache_first_method else None
    model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=degree))
    return model, run


def sample(model, method=None, run=None, steps: int = STEPS):
    """(latents, this rank's (actions, token counts) per call, run) of one CFG generation, cached with
    ``method`` (or ``run``)."""
    import ditcache
    from ditcache.sampling import sample as loop

    noise, cond, uncond = inputs(model=model)
    own = run is None and method is not None
    if own:
        run = ditcache.apply(model, method, count_flops=False)  # (FLOPs are not what is checked here)
    try:
        out = loop(model, noise, cond, uncond, steps=steps, guidance_scale=3.0)
        actions = [(r.actions, r.tokens) for r in run.stats.records] if run is not None else []
        return out, actions, run
    finally:
        if own:
            run.remove()


def gathered(obj):
    """Every rank's ``obj`` (rank order)."""
    got = [None] * dist.get_world_size()
    dist.all_gather_object(got, obj)
    return got


def diff(a, b) -> float:
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-12)


def case(results, name, cp_model, ref_model, method, reference_method=None):
    """Run ``method`` on the sharded model and, on rank 0, ``reference_method`` (default: the same) in one
    process; record the relative max difference and whether every rank (and the reference) planned alike."""
    import ditcache

    start = time.perf_counter()
    out, actions, run = sample(cp_model, ditcache.methods.resolve_method(method))
    wall = time.perf_counter() - start
    everyone = gathered(actions)
    if dist.get_rank() == 0:
        ref, ref_actions, _ = sample(ref_model, ditcache.methods.resolve_method(reference_method or method))
        acts = [[a for a, _ in rank] for rank in everyone]
        results[name] = dict(error=diff(out, ref), ranks_agree=all(a == acts[0] for a in acts),
                             same_plans_as_reference=acts[0] == [a for a, _ in ref_actions],
                             tokens=[[t for _, t in rank] for rank in everyone], wall_s=round(wall, 3))
    return out


def exact(results: dict) -> None:
    import ditcache
    from ditcache.methods import ClusCa, SpeCa, TaylorSeer, ToCa

    ref = build()
    cp_model, _ = parallel(copy.deepcopy(ref))
    cases = {
        "none": ("none", "none"),
        "fora1": ("fora:interval=1", "none"),
        "fora3": ("fora:interval=3", None),
        "taylorseer": (TaylorSeer(interval=3, order=2, warmup=2), None),
        "freqca": ("freqca:interval=3,warmup=2", None),
        "speca": (SpeCa(warmup=2, min_drafts=1, max_drafts=4, threshold=0.05, floor=0.02), None),
    }
    for name, (method, reference) in cases.items():
        case(results, name, cp_model, ref, method, reference)
    toca = dict(interval=3, fresh_ratio=0.2, score="attention", warmup=1,
                module_factor=(("attn", 0.0), ("cross_attn", 0.0), ("mlp", 1.0)), step_curve=(1.0, 0.0),
                layer_curve=(1.0, 0.0), sensitive=None, interval_curve=(1.0, 0.0), bonus=0.6, cell=2)
    for sharding in ("global", "shard"):
        for score in ("attention", "random"):
            case(results, f"toca-{score}-{sharding}", cp_model, ref,
                 ToCa(**{**toca, "score": score, "sharding": sharding}), ToCa(**{**toca, "score": score}))
        case(results, f"clusca-{sharding}", cp_model, ref, ClusCa(interval=4, warmup=2, clusters=8, gamma=0.05,
                                                                  sharding=sharding),
             ClusCa(interval=4, warmup=2, clusters=8, gamma=0.05))
    # Wan: ToCa refreshes cross-attention rows too, whose Ulysses all-to-all needs one count on every rank
    from ditcache import zoo

    wan = zoo.build("wan-tiny")
    wan_cp, _ = parallel(copy.deepcopy(wan))
    wan_toca = dict(interval=3, fresh_ratio=0.2, warmup=1, step_curve=(1.0, 0.0), layer_curve=(1.0, 0.0),
                    sensitive=None, interval_curve=(1.0, 0.0))
    case(results, "toca-wan-global", wan_cp, wan, ToCa(**wan_toca), ToCa(**wan_toca))
    if dist.get_rank() == 0:  # what the cached methods cost against uncached, for scale
        plain, _, _ = sample(ref)
        for name, method in (("toca", ToCa(**toca)), ("clusca", ClusCa(interval=4, warmup=2, clusters=8, gamma=0.05))):
            out, _, _ = sample(ref, method)
            results[f"{name}-single-vs-uncached"] = diff(out, plain)

    # the store keeps what each rank's site sees: its shard of the tokens
    with ditcache.cached(cp_model, "fora:interval=3", count_flops=False) as run:
        sample(cp_model, run=run)
        shapes = sorted({tuple(e.out[0].shape) for e in run.store.entries.values()})
    results["store_shapes"] = gathered(shapes)

    # ditcache applied first, enable_parallelism after; then removed: the sharded model runs uncached again
    first, run = parallel(copy.deepcopy(ref), ditcache.FORA(interval=3))
    out, actions, _ = sample(first, run=run)
    run.remove()
    after, _, _ = sample(first)
    if dist.get_rank() == 0:
        cached, _, _ = sample(ref, ditcache.FORA(interval=3))
        plain, _, _ = sample(ref)
        results["ditcache-first"] = dict(error=diff(out, cached), removed_error=diff(after, plain))


def skewed_speca(results: dict, reduce: bool) -> None:
    """SpeCa where rank 1's shard is hard to forecast and rank 0's easy, at one verified step."""
    import ditcache
    from ditcache.engine import execute

    reduced, local = execute._relative_l1, []

    def spy(forecast, real, shards):  # records this rank's own error; without the reduction, decides by it
        local.append(reduced(forecast, real))
        return reduced(forecast, real, shards) if reduce else local[-1]

    execute._relative_l1 = spy  # (this process only: a test's probe)
    ref = build()
    cp_model, _ = parallel(copy.deepcopy(ref))
    method = ditcache.SpeCa(warmup=2, min_drafts=1, max_drafts=6, order=1, threshold=THRESHOLD, decay=1.0, floor=0.0)
    noise, cond, _ = inputs()
    errors = []
    start = time.perf_counter()
    with ditcache.cached(cp_model, method, steps=8, count_flops=False) as run:
        for step in range(8):
            x = noise.clone()
            x[:, 32:] += JOLT * step * torch.linspace(-1, 1, 32 * 4).reshape(1, 32, 4)  # rank 1's tokens drift
            cp_model(hidden_states=x, timestep=torch.full((1,), 1.0 - step / 8), return_dict=False, **cond)
            errors.append(run.store.shared.get(("verify", 0)))
        actions = [r.actions[-1] for r in run.stats.records]
    everyone = gathered((errors, local, actions))
    if dist.get_rank() == 0:
        results["skewed"] = dict(errors=[e for e, _, _ in everyone], local=[v for _, v, _ in everyone],
                                 actions=[a for _, _, a in everyone], threshold=THRESHOLD,
                                 wall_s=round(time.perf_counter() - start, 3))


THRESHOLD = 0.1
JOLT = 0.5


def main() -> None:
    out_path, suite = sys.argv[1], sys.argv[2]
    timeout = float(os.environ.get("CP_TIMEOUT_S", "60"))
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout))
    # enable_parallelism picks a device as rank % torch.accelerator.device_count(): a CPU machine has none
    torch.accelerator.device_count = lambda: 1
    results: dict = {"world": dist.get_world_size()}
    start = time.perf_counter()
    if suite == "exact":  # and the deadlock guard, with the reduction
        exact(results)
        skewed_speca(results, reduce=True)
    elif suite == "deadlock-unreduced":
        skewed_speca(results, reduce=False)
    else:
        raise SystemExit(f"unknown suite {suite!r}")
    results["suite_s"] = round(time.perf_counter() - start, 2)
    if dist.get_rank() == 0:
        with open(out_path, "w") as f:
            json.dump(results, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()
    # Leave without the interpreter's and C++'s teardown: once in CI a rank whose work was done (rank 0 had
    # written OUT.json) aborted there ("terminate called without an active exception", code -6), after c10d
    # warned of diffusers' unwaited all-gathers. Nothing is left to save at this point.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
