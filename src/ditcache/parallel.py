"""Context parallelism: the group a model's token sequence is sharded over, and the collectives methods need.

diffusers' ``model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=..., ring_degree=...))``
splits every call's token sequence across the ranks of a (ring x ulysses) device mesh: each rank's blocks,
and so each of ditcache's site forwards, see that rank's shard of the tokens, and the attention processors
exchange keys and values (Ulysses all-to-all, ring passes) to attend over all of them. Caching composes with
it as long as every rank makes the same decisions: a rank that computes a site whose attention enters a
collective while another reuses it deadlocks both. Step-level decisions that read data (SpeCa's
verification error) are therefore reduced over this group; token choices are made on the gathered scores
(or per shard, with the same count on every rank); every buffer stays in the shard layout the hook sees.

``context_group(model)`` reads the group from the config diffusers records on the model
(``model._parallel_config.context_parallel_config``: its flattened ring x ulysses mesh), whichever of
``enable_parallelism`` and ``ditcache.apply`` came first. Only that group is used, never a data-parallel or
CFG group that may share the mesh. Without context parallelism it is ``SOLO``, whose methods return their
input: no collective and no copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ContextGroup:
    """The context-parallel process group of one model, and this rank's place in it."""

    group: object | None   # a torch.distributed ProcessGroup (ring x ulysses); None: one process, no sharding
    rank: int = 0          # this rank's index in the group = the index of its shard of the sequence
    size: int = 1          # ranks in the group = shards of the sequence
    uneven: bool = False   # shards may differ in length ("anything" modes split with tensor_split)
    config: object = None  # the ContextParallelConfig the group was read from (to tell when it changes)
    device: torch.device = torch.device("cpu")  # where small bookkeeping tensors go (NCCL reduces CUDA tensors only)

    @property
    def active(self) -> bool:
        return self.size > 1

    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """The elementwise sum (or "max", "min") of ``t`` over the group: a new tensor, same on every rank."""
        if not self.active:
            return t
        out = t.detach().clone().contiguous()
        dist.all_reduce(out, op=getattr(dist.ReduceOp, op.upper()), group=self.group)
        return out

    def lengths(self, n: int) -> list[int]:
        """Every rank's shard length, given this rank's ``n``: equal shards need no collective."""
        if not self.active:
            return [n]
        if not self.uneven:
            return [n] * self.size
        got = [torch.zeros(1, dtype=torch.long, device=self.device) for _ in range(self.size)]
        dist.all_gather(got, torch.tensor([n], dtype=torch.long, device=self.device), group=self.group)
        return [int(g) for g in got]

    def span(self, n: int) -> tuple[int, int]:
        """(offset of this rank's shard in the whole sequence, whole length), given its length ``n``."""
        lengths = self.lengths(n)
        return sum(lengths[:self.rank]), sum(lengths)

    def all_gather(self, t: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """The whole sequence from every rank's shard ``t``, concatenated along ``dim`` in rank order (the
        order diffusers shards in), the same on every rank. (B, n, ...) -> (B, N, ...) for dim 1."""
        if not self.active:
            return t
        dim = dim % t.dim()
        lengths = self.lengths(t.shape[dim])
        longest = max(lengths)
        t = t.detach().contiguous()
        if t.shape[dim] < longest:  # all_gather needs equal shapes: pad, then cut each piece back
            pad = list(t.shape)
            pad[dim] = longest - t.shape[dim]
            t = torch.cat([t, t.new_zeros(pad)], dim)
        pieces = [torch.empty_like(t) for _ in range(self.size)]
        dist.all_gather(pieces, t, group=self.group)
        return torch.cat([p.narrow(dim, 0, n) for p, n in zip(pieces, lengths)], dim)

    def shard_of(self, t: torch.Tensor, n: int, dim: int = 1) -> torch.Tensor:
        """This rank's shard (length ``n``) of a whole-sequence tensor ``t``."""
        if not self.active:
            return t
        start, _ = self.span(n)
        return t.narrow(dim, start, n)

    def localize(self, idx: torch.Tensor, n: int, same: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """A token choice over the whole sequence, idx (B, k) (distinct per row), as this rank's rows:
        (local idx (B, m), valid (B, m)). Samples pick different numbers of tokens in one shard, so rows
        are padded to m (the most any sample has here, at least 1) with tokens of the shard that were
        not chosen, marked invalid: the executor computes them but keeps their cached value. same: m is the
        most over every rank (one small collective), for sites whose attention exchanges rows between ranks
        and so needs one count everywhere."""
        start, _ = self.span(n)
        inside = (idx >= start) & (idx < start + n)                                 # (B, k)
        chosen = torch.zeros(idx.shape[0], n, dtype=torch.long, device=idx.device)
        chosen.scatter_add_(1, (idx - start).clamp(0, n - 1), inside.long())      # (B, n): 1 where chosen
        counts = inside.sum(1)                                                      # (B,)
        m = max(int(counts.max()), 1)
        if same:
            m = int(self.all_reduce(torch.tensor([m], device=self.device), "max"))
            if m > n:
                raise ValueError(f"a token choice puts {m} rows on one rank and this rank holds {n}: uneven shards "
                                 "cannot run one count on every rank; use sharding='shard'")
        order = torch.sort(1 - chosen, dim=1, stable=True).indices[:, :m]           # chosen first, in token order
        valid = torch.arange(m, device=idx.device)[None, :] < counts[:, None]       # (B, m)
        return order, valid


SOLO = ContextGroup(None)  # no context parallelism: every method is the identity


def context_group(model, last: ContextGroup = SOLO) -> ContextGroup:
    """The context-parallel group diffusers' ``enable_parallelism`` recorded on ``model``, or ``SOLO``.
    ``last``: the group read before, returned as is while the model's config is the same one."""
    config = getattr(getattr(model, "_parallel_config", None), "context_parallel_config", None)
    if config is None:
        return SOLO
    if config is last.config:
        return last
    mesh = config._flattened_mesh  # ring x ulysses, flattened: the ranks that share one sequence
    group = mesh.get_group()
    return ContextGroup(group, dist.get_rank(group), dist.get_world_size(group),
                        bool(config.ulysses_anything or config.ring_anything), config,
                        config._device or torch.device("cpu"))  # the device diffusers picked for this rank


def whole_grid(grid: tuple[int, int, int] | None, shards: ContextGroup) -> tuple[int, int, int] | None:
    """The token grid of the whole sequence from a grid read on one rank's inputs: when ditcache was applied
    before ``enable_parallelism`` it sees the shards (Flux's ``img_ids`` rows), whose largest coordinates
    over the ranks give the whole grid; a grid read from unsharded inputs is the same on every rank."""
    if not shards.active or grid is None:
        return grid
    return tuple(int(v) for v in shards.all_reduce(torch.tensor(grid, dtype=torch.long, device=shards.device), "max"))
