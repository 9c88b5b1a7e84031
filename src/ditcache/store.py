"""Per-run buffers: each site's last computed output, its forecaster's history, and byte accounting.

A site's output is kept as a tuple of tensors (joint-attention modules return two streams; a stream
may be None, as SD3's last block's text stream is). Keys are ``(branch, site_index)`` so split-CFG
branches never read each other's buffers.

What a step does not compute is predicted by the run's forecaster (``ditcache.forecast``; TaylorSeer's
Taylor series by default) from the history it keeps per site. Partial steps (ToCa, ClusCa, TokenCache)
may refresh some tokens and keep them until the next full step: those edits live in ``Entry.edited``,
a copy of the last output that forecasts are built on, while the forecaster's differences are taken
between real full-step outputs only, so refreshed tokens never bias the next derivative.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .forecast import Taylor
from .forecast.common import Coords, Output


def as_tuple(out) -> tuple[Output, bool]:
    """(B, N, D) tensor or tuple of them -> (tuple, was_a_single_tensor)."""
    if isinstance(out, torch.Tensor):
        return (out,), True
    return tuple(out), False


def from_tuple(out: Output, single: bool):
    return out[0] if single else out


@dataclass
class Entry:
    out: Output                    # the site's output at its last FULL step
    coords: Coords                 # where that step was
    single: bool                   # the module returned one tensor, not a tuple
    history: dict = field(default_factory=dict)  # the forecaster's own state (differences, older outputs)
    edited: Output | None = None   # `out` with tokens refreshed on partial steps since (None: no refresh)
    data: dict = field(default_factory=dict)     # method-owned per-site state (staleness counts, kept inputs)

    @property
    def anchor(self) -> Output:
        """What reuse returns and forecasts build on: the last output, with any refreshed tokens."""
        return self.out if self.edited is None else self.edited


class Store:
    def __init__(self, forecaster=None) -> None:
        self.forecaster = forecaster if forecaster is not None else Taylor()
        self.entries: dict[tuple[int, int], Entry] = {}
        self.shared: dict = {}  # method-owned run-wide state (cluster labels, centroids)

    def clear(self) -> None:
        self.entries.clear()
        self.shared.clear()

    def update(self, key: tuple[int, int], out, coords: Coords, order: int) -> None:
        """Record a freshly computed output; the forecaster extends its history up to ``order``."""
        fresh, single = as_tuple(out)
        old = self.entries.get(key)
        if old is not None:
            history = old.history
        else:  # forecasters that differ per site (HyCa's channel solvers) seed the site's history
            new = getattr(self.forecaster, "new_history", None)
            history = new(key) if new is not None else {}
        entry = Entry(fresh, coords, single, history, data=old.data if old is not None else {})
        self.forecaster.update(entry.history, old.out if old is not None else None, fresh,
                               (coords, old.coords if old is not None else None), order)
        self.entries[key] = entry

    def predict(self, key: tuple[int, int], coords: Coords, order: int) -> Output:
        """Order 0: the anchor itself (no copy). Order m: the forecaster's prediction at ``coords``."""
        entry = self._entry(key)
        if order == 0:
            return entry.anchor
        return self.forecaster.predict(entry.history, entry.anchor, coords, order)

    def terms(self, key: tuple[int, int], coords: Coords, order: int) -> list | None:
        """The forecast's terms [(w, F)] at ``coords`` (the forecast is the anchor plus sum w F: no terms is
        reuse), or None for a forecaster that does not give them (``ditcache.forecast``)."""
        terms = getattr(self.forecaster, "terms", None)
        if terms is None:
            return None
        return [] if order == 0 else terms(self._entry(key).history, coords, order)

    def commit(self, key: tuple[int, int], out: Output, coords: Coords) -> None:
        """A forecast step returned ``out``: forecasters that feed their own outputs back (FoCa) see it."""
        commit = getattr(self.forecaster, "commit", None)
        if commit is not None:
            commit(self._entry(key).history, out, coords)

    def edit(self, key: tuple[int, int], stream: int, anchor: torch.Tensor) -> None:
        """Keep ``anchor`` (B, N, D) as stream ``stream``'s refreshed anchor until the next full step."""
        entry = self._entry(key)
        edited = list(entry.anchor)
        edited[stream] = anchor
        entry.edited = tuple(edited)

    def single(self, key: tuple[int, int]) -> bool:
        return self._entry(key).single

    def has(self, key: tuple[int, int]) -> bool:
        return key in self.entries

    def nbytes(self) -> int:
        """Bytes of every distinct tensor held (outputs, histories, edits, method state)."""
        seen: set[int] = set()
        total = 0
        for t in tensors_in([(e.out, e.history, e.edited, e.data) for e in self.entries.values()]) + tensors_in(
                self.shared):
            if t.data_ptr() not in seen:
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


def tensors_in(obj) -> list[torch.Tensor]:
    """Every tensor inside nested dicts, lists and tuples (outputs, histories, method state, kept inputs)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in tensors_in(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in tensors_in(v)]
    return []

