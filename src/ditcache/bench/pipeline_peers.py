"""Peers (``ditcache.peers``) on a user's pipeline: applied to its transformer, given a cache context per call.

A forward pre-hook works out each transformer call's step (a new timestep) and branch (its place within the
step), and gives the peer what its sampler hook gives it in ``ditcache bench``; diffusers' hooks get one context
per branch, so split CFG keeps two states. MagCache calibrates on one uncached generation of the pipeline
first. FLOPs are counted on every transformer call (a peer decides call by call: nothing can be memoised).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import contextmanager

import torch

from ..userpipe import CallOptions, generate
from .pipeline import Outcome, _cat


class PipelinePeer:
    """A peer (``ditcache.peers``) on a pipeline's transformer. Before each transformer call a forward pre-hook
    works out the call's step (a new timestep) and branch (its place within the step) and gives the peer its
    per-call context, as the peer's sampler hook does in ``ditcache bench``. ``remove()`` undoes everything."""

    def __init__(self, pipe, name: str, settings: dict, steps: int, calibrate: Callable | None = None) -> None:
        from .. import adapters
        from ..peers import make_peer

        self.pipe, self.name, self.steps = pipe, name, steps
        model = pipe.transformer
        self._timestep_arg = adapters.model_spec(model).timestep_arg
        self._signature = inspect.signature(type(model).forward)
        self._last_t: float | None = None
        self.step, self.branch = -1, 0
        if name == "magcache" and "mag_ratios" not in settings and calibrate is not None:
            settings = {**settings, "mag_ratios": self._magcache_ratios(calibrate)}
        self.settings = settings
        self.peer = make_peer(name, model, settings, steps)
        self._handles = [model.register_forward_pre_hook(self._before, with_kwargs=True),
                         model.register_forward_hook(self._after)]

    def _before(self, module, args, kwargs) -> None:
        from .. import adapters

        bound = self._signature.bind_partial(module, *args, **kwargs).arguments
        t = adapters.timestep_value(bound[self._timestep_arg])
        if t != self._last_t:
            self.step, self.branch, self._last_t = self.step + 1, 0, t
        else:
            self.branch += 1
        self.peer.before_call(self.step, t, self.steps)
        if hasattr(self.peer, "hook_names"):  # diffusers hooks: one state per branch (split CFG), not per batch
            from diffusers.hooks.hooks import CacheContext, _set_cache_context

            _set_cache_context(module, CacheContext(f"branch{self.branch}", step_index=self.step,
                                                    num_inference_steps=self.steps, timestep=t))

    def _after(self, module, args, out) -> None:
        record = getattr(self.peer, "_record", None)
        if callable(record):  # the call's decision, read while its context is still set
            record()

    def new_generation(self) -> None:
        self.peer.reset()
        self.step, self.branch, self._last_t = -1, 0, None

    def _magcache_ratios(self, calibrate: Callable) -> list[float]:
        """MagCache's per-step ratios from one uncached generation in diffusers' calibration mode."""
        from diffusers.hooks import mag_cache as mc

        from ..peers import DiffusersRun, _hooked, _magcache_config

        model = self.pipe.transformer
        self.peer = DiffusersRun("magcache", model, {}, self.steps, lambda r: _magcache_config(r, None, True))
        handle = model.register_forward_pre_hook(self._before, with_kwargs=True)
        try:
            self.new_generation()
            calibrate()
            tails = [m for _, m in _hooked(model, (mc._MAG_CACHE_BLOCK_HOOK,))
                     if m._diffusers_hook.get_hook(mc._MAG_CACHE_BLOCK_HOOK).is_tail]
            state = tails[0]._diffusers_hook.get_hook(mc._MAG_CACHE_BLOCK_HOOK).state_manager.get_state()
            ratios = list(state.calibration_ratios)
        finally:
            handle.remove()
            self.peer.remove()
        if len(ratios) < self.steps:
            raise RuntimeError(f"MagCache calibration gave {len(ratios)} ratios for {self.steps} steps")
        return [float(r) for r in ratios[:self.steps]]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self.peer.remove()


@contextmanager
def _counted(model):
    """Count every transformer call's FLOPs (peers decide call by call: nothing can be memoised)."""
    from ..engine import flop_counter

    total = [0]
    own = model.__dict__.get("forward")
    inner = model.forward

    def forward(*args, **kwargs):
        with flop_counter() as counter:
            out = inner(*args, **kwargs)
        total[0] += counter.get_total_flops()
        return out

    model.forward = forward
    try:
        yield total
    finally:
        if own is None:
            model.__dict__.pop("forward", None)
        else:
            model.forward = own


def run_peer(pipe, options: CallOptions, prompts: list[str], seeds: list[int], name: str, settings: dict,
             count_flops: bool = True) -> Outcome:
    calibrate = lambda: generate(pipe, options, prompts[:1], [1_000_003])  # noqa: E731  independent noise
    peer = PipelinePeer(pipe, name, settings, options.steps, calibrate)
    try:
        images, latents = [], []
        with _counted(pipe.transformer) if count_flops else _nothing() as total:
            for prompt in prompts:
                peer.new_generation()
                im, lat = generate(pipe, options, [prompt], seeds)
                images.append(im)
                latents += lat
        extra = peer.peer.summary()
    finally:
        peer.remove()
    return Outcome(torch.cat(images), _cat(latents), total[0], extra=extra, peer_settings=peer.settings)


@contextmanager
def _nothing():
    yield [0]
