"""Per-run buffers: the last outputs of each site, their Taylor factors, and byte accounting.

A site's output is kept as a tuple of tensors (joint-attention modules return two streams; a stream
may be None, as SD3's last block's text stream is). Keys are ``(branch, site_index)`` so split-CFG
branches never read each other's buffers.

Forecasting follows TaylorSeer (Liu et al., arXiv 2503.06923): at each full step the factors become
``F0 = fresh``, ``F(i+1) = (F(i)_new - F(i)_old) / d`` with ``d`` the distance between the last two full
steps *in the coordinate the engine passes* (the model's timestep value, so non-uniform schedules are
respected); a forecast is ``sum_i F(i) * delta**i / i!``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

Output = tuple[torch.Tensor | None, ...]


def as_tuple(out) -> tuple[Output, bool]:
    """(B, N, D) tensor or tuple of them -> (tuple, was_a_single_tensor)."""
    if isinstance(out, torch.Tensor):
        return (out,), True
    return tuple(out), False


def from_tuple(out: Output, single: bool):
    return out[0] if single else out


@dataclass
class Entry:
    factors: list[Output]          # [F0, F1, ...]; F0 is the last computed (or token-refreshed) output
    coord: float                   # coordinate of the step that produced F0
    single: bool                   # the module returned one tensor, not a tuple
    data: dict = field(default_factory=dict)  # method-owned per-site state (staleness counts, scores)


class Store:
    def __init__(self) -> None:
        self.entries: dict[tuple[int, int], Entry] = {}
        self.shared: dict = {}  # method-owned run-wide state (cluster labels, centroids)

    def clear(self) -> None:
        self.entries.clear()
        self.shared.clear()

    def update(self, key: tuple[int, int], out, coord: float, max_order: int) -> None:
        """Record a freshly computed output and extend its finite differences up to ``max_order``."""
        fresh, single = as_tuple(out)
        old = self.entries.get(key)
        factors = [fresh]
        if old is not None and max_order > 0 and coord != old.coord:
            d = coord - old.coord
            for i in range(min(len(old.factors), max_order)):
                factors.append(_combine(factors[i], old.factors[i], lambda a, b: (a - b) / d))
        data = old.data if old is not None else {}
        self.entries[key] = Entry(factors, coord, single, data)

    def predict(self, key: tuple[int, int], coord: float, order: int) -> Output:
        """Order 0: the stored output itself (no copy). Order m: the Taylor forecast at ``coord``."""
        entry = self._entry(key)
        if order == 0 or len(entry.factors) == 1:
            return entry.factors[0]
        delta = coord - entry.coord
        out = entry.factors[0]
        for i in range(1, min(order, len(entry.factors) - 1) + 1):
            w = delta**i / math.factorial(i)
            out = _combine(out, entry.factors[i], lambda a, b, w=w: a + w * b)
        return out

    def write_tokens(self, key: tuple[int, int], stream: int, idx: torch.Tensor, fresh: torch.Tensor) -> None:
        """Replace F0 of one stream at token indices ``idx`` (B, k) with ``fresh`` (B, k, D)."""
        entry = self._entry(key)
        f0 = list(entry.factors[0])
        f0[stream] = scatter_tokens(f0[stream], idx, fresh)
        entry.factors[0] = tuple(f0)

    def single(self, key: tuple[int, int]) -> bool:
        return self._entry(key).single

    def has(self, key: tuple[int, int]) -> bool:
        return key in self.entries

    def nbytes(self) -> int:
        seen: set[int] = set()
        total = 0
        tensors = [t for e in self.entries.values() for out in e.factors for t in out]
        tensors += [t for e in self.entries.values() for t in _tensors(e.data)] + _tensors(self.shared)
        for t in tensors:
            if t is not None and t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
        return total

    def _entry(self, key: tuple[int, int]) -> Entry:
        try:
            return self.entries[key]
        except KeyError:
            raise RuntimeError(
                f"site {key[1]} (branch {key[0]}) has no cached output yet: its first call in a generation "
                "must be FULL. Check the method's warm-up."
            ) from None


def _tensors(obj) -> list[torch.Tensor]:
    """Every tensor inside nested dicts, lists and tuples (method state, kept inputs)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def _combine(a: Output, b: Output, fn) -> Output:
    return tuple(None if x is None else fn(x, y) for x, y in zip(a, b))


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, N, D), idx (B, k) -> (B, k, D)."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def scatter_tokens(base: torch.Tensor, idx: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """A copy of base (B, N, D) with rows idx (B, k) replaced by fresh (B, k, D)."""
    return base.scatter(1, idx.unsqueeze(-1).expand(-1, -1, base.shape[-1]), fresh.to(base.dtype))
