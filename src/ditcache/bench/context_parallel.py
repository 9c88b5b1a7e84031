"""ditcache under diffusers' context parallelism: per-rank and total time, and quality, beside one process and
beside data-parallel seed sharding.

    OMP_WAIT_POLICY=PASSIVE torchrun --nproc-per-node 2 -m ditcache bench --context-parallel 2 --model flux256
    OMP_WAIT_POLICY=PASSIVE torchrun --nproc-per-node 2 -m ditcache bench --context-parallel 2 --model video --steps 20

Every rank loads the shipped default; a copy is sharded by sequence (``ContextParallelConfig(ulysses_degree=
ranks)``: gloo on CPUs, NCCL on GPUs). Per method (row) and for the same seeds, in one batch:
- **context-parallel**: the sharded copy, cached; each rank's wall-clock (the generation ends with the slowest);
- **one process**: the unsharded model on rank 0 alone (the others wait), cached, and uncached once;
- **data-parallel**: each rank generates its share of the seeds (``seeds[rank::ranks]``) on the unsharded model,
  as ``ditcache bench`` does under torchrun; the slowest rank's time.
Quality: PSNR (dB) of the context-parallel images against one process uncached ("vs uncached") and against one
process with the same method ("vs 1-proc cached": the sharding rule's own cost; inf when identical). Token methods
also report the tokens computed per rank and step against one process's (the global rule pads each rank to its
most-loaded sample). Prints a markdown table on rank 0 (and writes it to --out).
"""

from __future__ import annotations

import copy
import datetime
import os
import time

import torch
import torch.distributed as dist

from .. import engine
from ..methods import FORA, ClusCa, FreqCa, SpeCa, TaylorSeer, ToCa
from ..metrics import psnr
from ..sampling import sample
from .subjects import load_subject


def check_launch(ranks: int) -> None:
    """Refuse before any work unless launched by torchrun with ``ranks`` processes."""
    world = int(os.environ.get("WORLD_SIZE", "0") or 0)
    if ranks < 2:
        raise ValueError(f"--context-parallel must be >= 2 ranks, got {ranks}")
    if world != ranks:
        raise ValueError(f"--context-parallel {ranks} needs {ranks} processes: launch it as `torchrun "
                         f"--nproc-per-node {ranks} -m ditcache bench --context-parallel {ranks} ...` "
                         f"(WORLD_SIZE is {world or 'unset'})")


def settings(family: str) -> list[tuple[str, object]]:
    toca = "flux" if family == "flux" else "dit"
    return [
        ("FORA N=3", FORA(interval=3)),
        ("TaylorSeer N=4 O=2", TaylorSeer(interval=4, order=2)),
        ("FreqCa N=6", FreqCa(interval=6)),
        ("SpeCa", SpeCa()),
        ("ToCa global", ToCa.preset(toca, interval=3, fresh_ratio=0.1)),
        ("ToCa shard", ToCa.preset(toca, interval=3, fresh_ratio=0.1, sharding="shard")),
        ("ClusCa global", ClusCa(interval=4, clusters=8)),
        ("ClusCa shard", ClusCa(interval=4, clusters=8, sharding="shard")),
    ]


def generate(subject, model, seeds, steps, method):
    """(images, seconds, tokens computed per call) of one batch."""
    device = next(model.parameters()).device
    noise, cond, uncond = (_to(t, device) for t in subject.inputs(seeds))
    start = time.perf_counter()
    if method is None:
        lat, tokens = sample(model, noise, cond, uncond, steps=steps, guidance_scale=subject.guidance), 0
    else:
        with engine.cached(model, method, count_flops=False) as run:
            lat = sample(model, noise, cond, uncond, steps=steps, guidance_scale=subject.guidance)
        tokens = sum(sum(r.tokens) for r in run.stats.records)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return subject.decode(lat), time.perf_counter() - start, tokens


def _to(obj, device):
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj.to(device) if isinstance(obj, torch.Tensor) else obj


def gathered(obj) -> list:
    got = [None] * dist.get_world_size()
    dist.all_gather_object(got, obj)
    return got


def run(model: str, seeds: int, steps: int, threads: int, out: str | None = None) -> str | None:
    """The comparison table (rank 0; None on the other ranks). Call under torchrun."""
    torch.set_num_threads(threads)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))
    try:
        return _run(model, seeds, steps, threads, out, backend)
    finally:
        dist.destroy_process_group()


def _run(model_name, n_seeds, steps, threads, out, backend):
    rank, world = dist.get_rank(), dist.get_world_size()
    if backend == "gloo":  # enable_parallelism picks a device as rank % torch.accelerator.device_count()
        torch.accelerator.device_count = lambda: 1
    from diffusers import ContextParallelConfig

    subject = load_subject(model_name)
    ref = subject.transformer
    if backend == "nccl":
        torch.cuda.set_device(rank % torch.cuda.device_count())
        ref.cuda()
    sharded = copy.deepcopy(ref)
    sharded.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world))
    seeds = list(range(n_seeds))
    rows = []
    single_plain = None
    for name, method in [("uncached", None)] + settings(subject.family):
        dist.barrier()
        cp_images, cp_s, cp_tokens = generate(subject, sharded, seeds, steps, method)
        per_rank = gathered((round(cp_s, 2), cp_tokens))
        dist.barrier()
        one = None
        if rank == 0:
            one = generate(subject, ref, seeds, steps, method)
            if method is None:
                single_plain = one[0]
        dist.barrier()
        _, dp_s, _ = generate(subject, ref, seeds[rank::world], steps, method)
        dp = gathered(round(dp_s, 2))
        if rank == 0:
            row = {"method": name, "CP s per rank": " / ".join(str(s) for s, _ in per_rank),
                   "CP s": max(s for s, _ in per_rank), "1-proc s": round(one[1], 2),
                   "DP s": max(dp), "PSNR vs uncached": round(psnr(cp_images.cpu(), single_plain.cpu()), 2),
                   "PSNR vs 1-proc cached": round(psnr(cp_images.cpu(), one[0].cpu()), 2)}
            if name.startswith(("ToCa", "ClusCa")):
                row["tokens per rank / 1-proc"] = " / ".join(str(t) for _, t in per_rank) + f" / {one[2]}"
            rows.append(row)
            print(row, flush=True)
    if rank != 0:
        return None
    head = (f"{model_name}, {n_seeds} seeds in one batch, {steps} steps, {world} ranks ({backend}, "
            f"Ulysses), {threads} thread(s) per rank")
    header = list(dict.fromkeys(k for row in rows for k in row))
    table = "\n".join([head, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                      + ["| " + " | ".join(str(row.get(k, "")) for k in header) + " |" for row in rows])
    print(table)
    if out:
        with open(out, "w") as f:
            f.write(table + "\n")
    return table
