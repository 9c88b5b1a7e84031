"""The peers: caches users would otherwise pick, run on the same bare transformer, sampler and seeds as
ditcache's methods, so that ``ditcache bench`` compares like with like.

Each peer is applied the way its own documentation says for a bare diffusers transformer:

- diffusers 0.42 hooks (FirstBlockCache, PyramidAttentionBroadcast, FasterCache, TaylorSeer, MagCache):
  ``model.enable_cache(config)`` on CacheMixin models (Flux, Wan), ``diffusers.hooks.apply_*`` on the others
  (DiT, PixArt, SD3); stateful hooks get a ``CacheContext`` before every denoiser call and are reset between
  generations (``reset_stateful_hooks``); PAB and FasterCache read the timestep through a callback.
- cache-dit 1.5.3 (DBCache, optionally with its TaylorSeer calibrator): ``cache_dit.enable_cache(model,
  cache_config=DBCacheConfig(...))``, ``cache_dit.refresh_context`` per generation, ``cache_dit.disable_cache``.

Our sampler calls the model once per step with the CFG batch doubled ([uncond; cond]), so every peer sees one
call per step: one diffusers context per call, ``enable_separate_cfg=False`` for cache-dit.

A peer that cannot be applied raises ``PeerError`` naming the peer and the model class; nothing ever falls back
to running uncached. A peer that is applied but skips nothing on some model is a measured result, not an error.

Usage::

    peer = make_peer("fbcache", model, {"threshold": 0.1}, steps=50)
    latents = generate_with_peer(peer, model, noise, cond, uncond, steps=50, guidance_scale=3.0)
    print(peer.summary()); peer.remove()
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

import torch
from torch import nn

from .sampling import sample


class PeerError(RuntimeError):
    """A peer could not be applied to, or could not run on, a model."""


@dataclass(frozen=True)
class PeerSpec:
    package: str             # distribution that implements it: "diffusers" | "cache-dit"
    label: str               # how reports name it
    sweep: tuple[dict, ...]  # settings to benchmark: kwargs of the peer's own config class
    apply: Callable          # (model, settings, steps) -> PeerRun


# ---------------------------------------------------------------------------------------------------------------
# Model knowledge, as data keyed by the transformer's class name. A class missing here is an error, never a guess.

# TaylorSeer: modules whose outputs are forecast (re.fullmatch on module names): the attention and MLP branches of
# every block, as in the TaylorSeer paper (arXiv 2503.06923), and Flux's single-stream blocks whole (their attention
# and MLP share one output projection). diffusers' default ("^transformer_blocks.*attn") matches no module on
# DiT and PixArt ("attn1") and leaves the MLPs computed everywhere.
_TAYLORSEER_MODULES: dict[str, tuple[str, ...]] = {
    "DiTTransformer2DModel": (r"transformer_blocks\.\d+\.(attn1|ff)",),
    "PixArtTransformer2DModel": (r"transformer_blocks\.\d+\.(attn1|attn2|ff)",),
    "FluxTransformer2DModel": (r"transformer_blocks\.\d+\.(attn|ff|ff_context)", r"single_transformer_blocks\.\d+"),
    "SD3Transformer2DModel": (r"transformer_blocks\.\d+\.(attn|attn2|ff|ff_context)",),
    "WanTransformer3DModel": (r"blocks\.\d+\.(attn1|attn2|ffn)",),
}

# FasterCache's CFG-Cache: (layout of the model output for its low/high-frequency split, the call kwargs that carry
# the doubled batch and are halved when the uncond half is skipped). Flux is absent on purpose: its output is packed
# tokens (B, N, C), which the frequency split does not support; only the attention-only mode runs there.
_FASTERCACHE_LAYOUT: dict[str, tuple[str, tuple[str, ...]]] = {
    "DiTTransformer2DModel": ("BCHW", ("hidden_states", "timestep", "class_labels")),
    "PixArtTransformer2DModel": ("BCHW", ("hidden_states", "timestep", "encoder_hidden_states")),
    "SD3Transformer2DModel": ("BCHW", ("hidden_states", "timestep", "encoder_hidden_states", "pooled_projections")),
    "WanTransformer3DModel": ("BCFHW", ("hidden_states", "timestep", "encoder_hidden_states")),
}

# cache-dit ships a BlockAdapter for DiT, PixArt, Flux and Wan and finds it from the class; for these classes it
# documents passing one explicitly: (block list attribute, ForwardPattern name).
_CACHE_DIT_BLOCKS: dict[str, tuple[str, str]] = {
    "SD3Transformer2DModel": ("transformer_blocks", "Pattern_1"),  # blocks return (encoder_hidden_states, hidden)
}

# Independent noise for MagCache's calibration run, so calibration never sees the evaluation noise.
CALIBRATION_SEED = 1_000_003


def _cls(model: nn.Module) -> str:
    return type(model).__name__


# ---------------------------------------------------------------------------------------------------------------
# Restoring the model exactly: what the peers leave behind after their own removal.

class _Snapshot:
    """Instance attributes and child modules of every submodule, taken before a peer is applied.

    The peers' own removal restores behaviour but not the objects: diffusers leaves ``forward`` and
    ``_diffusers_hook`` instance attributes; cache-dit's DiT/Flux patch functors leave a patched ``forward``,
    ``_is_patched`` and, on DiT, a ``_norm1_emb`` child (which adds keys to the state dict)."""

    def __init__(self, model: nn.Module):
        self.modules = {id(m): (m, dict(vars(m)), dict(m._modules)) for m in model.modules()}

    def restore(self) -> None:
        for module, attrs, children in self.modules.values():
            for key in set(vars(module)) - set(attrs):
                delattr(module, key)
            if "forward" in attrs and vars(module).get("forward") is not attrs["forward"]:
                module.forward = attrs["forward"]
            module._modules.clear()
            module._modules.update(children)


# ---------------------------------------------------------------------------------------------------------------
# One peer on one model.

class PeerRun:
    """One peer applied to one model; ``remove()`` undoes it."""

    def __init__(self, name: str, model: nn.Module, settings: dict, steps: int):
        self.name, self.model, self.settings, self.steps = name, model, dict(settings), steps
        self.label = PEERS[name].label
        other = getattr(model, "_ditcache_peer", None)
        if other is not None:  # two peers' hooks on one model would not come off cleanly
            raise self.error(f"cannot be applied: {other.label} is applied; remove() it first")
        self._snapshot = _Snapshot(model)
        model._ditcache_peer = self  # removed with everything else added after the snapshot
        self.removed = False

    def prepare(self, noise: torch.Tensor, cond: dict, uncond: dict | None, guidance_scale: float) -> None:
        """Work a peer needs once before its first generation (MagCache calibrates here); a no-op otherwise."""

    def before_call(self, step_index: int, timestep, num_steps: int) -> None:
        """Runs before each denoiser call (the sampler's ``before_call``)."""

    def reset(self) -> None:
        """Clears per-generation state; call between generations."""

    def remove(self) -> None:
        if not self.removed:
            self._remove()
            self._snapshot.restore()
            self.removed = True

    def _remove(self) -> None:
        raise NotImplementedError

    def _abort(self) -> None:
        """Undo a half-done application (the peer's own removal may itself fail on a half-built state)."""
        with contextlib.suppress(Exception):
            self._remove()
        self._snapshot.restore()
        self.removed = True

    def summary(self) -> dict:
        """What the peer reports about the last generation (skipped steps where it says)."""
        return {}

    def error(self, what: str) -> PeerError:
        return PeerError(f"{self.label} ({self.name}) {what} on {_cls(self.model)}")


def _diffusers_hooks():
    from diffusers.hooks import (
        FasterCacheConfig,
        FirstBlockCacheConfig,
        MagCacheConfig,
        PyramidAttentionBroadcastConfig,
        SeaCacheConfig,
        TaylorSeerCacheConfig,
        TextKVCacheConfig,
        apply_faster_cache,
        apply_first_block_cache,
        apply_mag_cache,
        apply_pyramid_attention_broadcast,
        apply_sea_cache,
        apply_taylorseer_cache,
        apply_text_kv_cache,
    )
    from diffusers.hooks import faster_cache as fc
    from diffusers.hooks import first_block_cache as fbc
    from diffusers.hooks import mag_cache as mc
    from diffusers.hooks import pyramid_attention_broadcast as pab
    from diffusers.hooks import sea_cache as sc
    from diffusers.hooks import taylorseer_cache as ts
    from diffusers.hooks import text_kv_cache as tkv

    # config class -> (apply function, hook names it registers, leader hook whose state says skip/compute)
    return {
        FirstBlockCacheConfig: (apply_first_block_cache, (fbc._FBC_LEADER_BLOCK_HOOK, fbc._FBC_BLOCK_HOOK),
                                fbc._FBC_LEADER_BLOCK_HOOK),
        PyramidAttentionBroadcastConfig: (apply_pyramid_attention_broadcast, (pab._PYRAMID_ATTENTION_BROADCAST_HOOK,),
                                          None),
        FasterCacheConfig: (apply_faster_cache, (fc._FASTER_CACHE_DENOISER_HOOK, fc._FASTER_CACHE_BLOCK_HOOK), None),
        TaylorSeerCacheConfig: (apply_taylorseer_cache, (ts._TAYLORSEER_CACHE_HOOK,), None),
        MagCacheConfig: (apply_mag_cache, (mc._MAG_CACHE_LEADER_BLOCK_HOOK, mc._MAG_CACHE_BLOCK_HOOK),
                         mc._MAG_CACHE_LEADER_BLOCK_HOOK),
        # (SeaCache's root hook sits on the model itself, found under the name "")
        SeaCacheConfig: (apply_sea_cache, (sc._SEA_CACHE_LEADER_BLOCK_HOOK, sc._SEA_CACHE_BLOCK_HOOK,
                                           sc._SEA_CACHE_POST_NORM_HOOK, sc._SEA_CACHE_ROOT_HOOK),
                         sc._SEA_CACHE_LEADER_BLOCK_HOOK),
        # only the block hooks count as hooked modules: its transformer hook alone caches nothing
        TextKVCacheConfig: (apply_text_kv_cache, (tkv._TEXT_KV_CACHE_BLOCK_HOOK, tkv._TEXT_KV_CACHE_TRANSFORMER_HOOK),
                            None),
    }


def _hooked(model: nn.Module, names: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    """(module name, module) of every submodule carrying one of the diffusers hooks ``names``."""
    return [(n, m) for n, m in model.named_modules()
            if any(h in getattr(getattr(m, "_diffusers_hook", None), "hooks", {}) for h in names)]


class DiffusersRun(PeerRun):
    """A diffusers hook-based cache. ``make_config(run)`` builds its config (it may read ``run.timestep``)."""

    def __init__(self, name, model, settings, steps, make_config: Callable[[DiffusersRun], object]):
        super().__init__(name, model, settings, steps)
        self.timestep = 1000.0       # what PAB / FasterCache's timestep callbacks read; set before every call
        self.decisions: list[bool] = []  # per call: True = the whole stack ran (FBC, MagCache)
        self._pending = False
        self.config = None
        self._leader_hook = None
        self._make_config = make_config
        self._install()

    def _install(self) -> None:
        from diffusers.hooks import HookRegistry
        from diffusers.models.cache_utils import CacheMixin

        try:
            try:
                self.config = self._make_config(self)
            except TypeError as e:  # an unknown setting
                raise self.error(f"got bad settings {self.settings}: {e}") from e
            apply_fn, self.hook_names, self.leader = _diffusers_hooks()[type(self.config)]
            try:
                if isinstance(self.model, CacheMixin):
                    self.model.enable_cache(self.config)  # the documented route on CacheMixin models
                else:
                    apply_fn(self.model, self.config)
                    HookRegistry.check_if_exists_or_initialize(self.model).invalidate_child_registries_cache()
            except Exception as e:
                raise self.error(f"could not be applied ({type(e).__name__}: {e})") from e
            self.hooked = [n for n, _ in _hooked(self.model, self.hook_names) if n]
            if not self.hooked:
                raise self.error("found no module to hook")
        except Exception:
            self._abort()
            raise

    def _leader_state(self):
        if self._leader_hook is None:  # found once: walking the module tree every call costs ~1.5 ms
            for _, m in _hooked(self.model, (self.leader,)):
                self._leader_hook = m._diffusers_hook.get_hook(self.leader)
        return self._leader_hook.state_manager.get_state()

    def _record(self) -> None:
        if self._pending and self.leader is not None:
            self.decisions.append(bool(self._leader_state().should_compute))
        self._pending = False

    def before_call(self, step_index, timestep, num_steps) -> None:
        from diffusers.hooks.hooks import CacheContext, _set_cache_context

        if self.removed:
            raise self.error("was removed and cannot run")
        self._record()
        self.timestep = float(timestep)
        # One context per call: our single call per step carries both CFG halves.
        _set_cache_context(self.model, CacheContext("cfg_batch", step_index=step_index,
                                                    num_inference_steps=num_steps, timestep=timestep))
        self._pending = True

    def reset(self) -> None:
        from diffusers.hooks import HookRegistry

        HookRegistry.check_if_exists_or_initialize(self.model).reset_stateful_hooks(recurse=True)
        self.decisions, self._pending = [], False

    def _remove(self) -> None:
        from diffusers.hooks import HookRegistry
        from diffusers.models.cache_utils import CacheMixin

        if isinstance(self.model, CacheMixin) and self.model.is_cache_enabled:
            self.model.disable_cache()
            return
        registry = HookRegistry.check_if_exists_or_initialize(self.model)
        for hook in getattr(self, "hook_names", ()):
            registry.remove_hook(hook, recurse=True)
        registry.invalidate_child_registries_cache()

    def summary(self) -> dict:
        self._record()
        if self.leader is None or not self.decisions:
            return {}
        skipped = [i for i, ran in enumerate(self.decisions) if not ran]
        return {"calls": len(self.decisions), "skipped_calls": len(skipped), "skipped_steps": skipped}


# --- the diffusers peers' configs ---------------------------------------------------------------------------------

def _fbcache(run: DiffusersRun):
    from diffusers.hooks import FirstBlockCacheConfig

    return FirstBlockCacheConfig(**run.settings)


def _pab(run: DiffusersRun):
    from diffusers.hooks import PyramidAttentionBroadcastConfig

    return PyramidAttentionBroadcastConfig(**run.settings, current_timestep_callback=lambda: run.timestep)


def _fastercache(run: DiffusersRun):
    from diffusers.hooks import FasterCacheConfig

    settings = dict(run.settings)
    layout = _FASTERCACHE_LAYOUT.get(_cls(run.model))
    if layout is not None:
        settings.setdefault("tensor_format", layout[0])
        settings.setdefault("_unconditional_conditional_input_kwargs_identifiers", list(layout[1]))
    elif not settings.get("is_guidance_distilled", False):
        raise run.error(
            "cannot run: its CFG-Cache splits the model output into frequency bands and needs an image-shaped "
            f"output (BCHW or BCFHW), supported here for {sorted(_FASTERCACHE_LAYOUT)}; only its attention-only "
            "mode (is_guidance_distilled=True) runs")
    # The weight of the attention extrapolation; the value diffusers falls back to (with a warning) when unset.
    settings.setdefault("attention_weight_callback", lambda _module: 0.5)
    return FasterCacheConfig(**settings, current_timestep_callback=lambda: run.timestep)


def _taylorseer(run: DiffusersRun):
    from diffusers.hooks import TaylorSeerCacheConfig

    settings = dict(run.settings)
    if "cache_identifiers" not in settings:
        if _cls(run.model) not in _TAYLORSEER_MODULES:
            raise run.error(f"has no module list here (known: {sorted(_TAYLORSEER_MODULES)}); "
                            "pass cache_identifiers in the settings")
        settings["cache_identifiers"] = list(_TAYLORSEER_MODULES[_cls(run.model)])
    # fp32 factors: diffusers' bf16 default makes every forecast a bf16 op, ~100x slower than fp32 on these CPUs.
    settings.setdefault("taylor_factors_dtype", torch.float32)
    return TaylorSeerCacheConfig(**settings)


def _magcache_config(run: DiffusersRun, ratios: list[float] | None, calibrate: bool):
    from diffusers.hooks import MagCacheConfig

    if calibrate:  # steps + 1: diffusers clears the ratios when the last step ends; one more step keeps them readable
        return MagCacheConfig(calibrate=True, num_inference_steps=run.steps + 1)
    return MagCacheConfig(**{"mag_ratios": ratios, **run.settings}, num_inference_steps=run.steps)


class MagCacheRun(DiffusersRun):
    """MagCache needs magnitude ratios for this model and step count: unless the settings carry ``mag_ratios``,
    ``prepare`` runs one uncached calibration generation (diffusers' ``calibrate=True`` mode) on the first
    generation's conditioning with independent noise (CALIBRATION_SEED), then installs the real hooks."""

    def __init__(self, name, model, settings, steps):
        self.ratios = settings.get("mag_ratios")
        self.calibration_s = 0.0
        if self.ratios is not None:
            super().__init__(name, model, settings, steps, lambda run: _magcache_config(run, None, False))
        else:  # hooks come in prepare(); until then the model is untouched
            PeerRun.__init__(self, name, model, settings, steps)
            self.config, self.hook_names, self.leader, self.decisions, self._pending = None, (), None, [], False
            self._leader_hook = None

    def prepare(self, noise, cond, uncond, guidance_scale) -> None:
        if self.config is not None:
            return
        start = time.perf_counter()
        del self.model._ditcache_peer  # the calibration run is a peer of its own, removed before we install
        try:
            self.ratios = calibrate_magcache(self.model, noise, cond, uncond, self.steps, guidance_scale)
        finally:
            self.model._ditcache_peer = self
        self._make_config = lambda run: _magcache_config(run, self.ratios, False)
        self._install()
        self.calibration_s += time.perf_counter() - start

    def before_call(self, step_index, timestep, num_steps) -> None:
        if self.config is None:
            raise self.error("is not calibrated: call prepare() (generate_with_peer does) or pass mag_ratios")
        super().before_call(step_index, timestep, num_steps)

    def reset(self) -> None:
        if self.config is not None:
            super().reset()

    def summary(self) -> dict:
        out = super().summary() if self.config is not None else {}
        if self.ratios is not None:
            out["mag_ratios"] = [round(float(r), 4) for r in self.ratios]
            out["calibration_s"] = round(self.calibration_s, 3)  # one uncached generation, once per PeerRun
        return out


def calibrate_magcache(model: nn.Module, noise, cond, uncond, steps: int, guidance_scale: float) -> list[float]:
    """MagCache's per-step magnitude ratios for ``model`` at ``steps`` steps, from one uncached generation in
    diffusers' calibration mode (on noise from CALIBRATION_SEED, with the given conditioning)."""
    from diffusers.hooks import mag_cache as mc

    run = DiffusersRun("magcache", model, {}, steps, lambda r: _magcache_config(r, None, True))
    try:
        g = torch.Generator().manual_seed(CALIBRATION_SEED)
        calib_noise = torch.randn(noise.shape, generator=g, dtype=noise.dtype).to(noise.device)
        sample(model, calib_noise, cond, uncond, steps=steps, guidance_scale=guidance_scale,
               before_call=run.before_call)
        tails = [m for _, m in _hooked(model, (mc._MAG_CACHE_BLOCK_HOOK,))
                 if m._diffusers_hook.get_hook(mc._MAG_CACHE_BLOCK_HOOK).is_tail]
        ratios = list(tails[0]._diffusers_hook.get_hook(mc._MAG_CACHE_BLOCK_HOOK).state_manager.get_state()
                      .calibration_ratios)
    finally:
        run.remove()
    if len(ratios) != steps:
        raise PeerError(f"MagCache calibration on {_cls(model)} gave {len(ratios)} ratios for {steps} steps")
    return ratios


# --- SeaCache and TextKVCache (diffusers 0.42) ----------------------------------------------------------------------

def sea_sigma(model: nn.Module, timestep: float) -> float:
    """The flow-matching sigma SeaCache's spectral filter expects for a sampler timestep. Flow samplers: t / 1000.
    DDIM (DiT, PixArt): x_t = sqrt(a) x0 + sqrt(1 - a) eps, and the filter's normalised gain depends only on the
    ratio noise / signal, so sigma = sqrt(1 - a) / (sqrt(a) + sqrt(1 - a)) gives the same filter (a = alpha-bar)."""
    from .sampling import family, make_scheduler

    if family(model).scheduler == "flow":
        return min(max(float(timestep) / 1000.0, 0.0), 1.0)
    alphas = make_scheduler(model).alphas_cumprod
    a = float(alphas[min(max(int(round(float(timestep))), 0), len(alphas) - 1)])
    return (1 - a) ** 0.5 / (a**0.5 + (1 - a) ** 0.5)


def _raw_vision(model: nn.Module):
    """SeaCache's ``raw_vision_callback`` for a model diffusers has no adapter for: the noisy latents of the call,
    one (C, F, H, W) tensor per sample (the CFG halves included). Image latents (B, C, H, W) get F = 1; video
    (B, C, F, H, W) as they are; packed tokens (B, N, C) are unpacked on the model's token grid."""
    import inspect

    from . import adapters

    signature = inspect.signature(model.forward)

    def callback(module, args, kwargs):
        inputs = signature.bind_partial(*args, **kwargs).arguments
        x = inputs.get("hidden_states")
        if not isinstance(x, torch.Tensor):
            return None
        if x.ndim == 4:
            return list(x.unsqueeze(2).unbind(0))                              # (C, 1, H, W) each
        if x.ndim == 5:
            return list(x.unbind(0))                                           # (C, F, H, W) each
        grid = adapters.token_grid(model, inputs) if x.ndim == 3 else None
        if grid is None or grid[0] * grid[1] * grid[2] != x.shape[1]:
            return None
        return list(x.reshape(x.shape[0], *grid, x.shape[-1]).permute(0, 4, 1, 2, 3).unbind(0))
    return callback


def _seacache(run: DiffusersRun):
    from diffusers.hooks import SeaCacheConfig

    return SeaCacheConfig(**run.settings, raw_vision_callback=_raw_vision(run.model))


class SeaCacheRun(DiffusersRun):
    """SeaCache reads the step, the step count and the sigma from each call's cache context (it runs in
    "fail-open" mode, computing everything, without them): ``before_call`` gives them (``sea_sigma``)."""

    def __init__(self, name, model, settings, steps):
        super().__init__(name, model, settings, steps, _seacache)

    def before_call(self, step_index, timestep, num_steps) -> None:
        from diffusers.hooks.hooks import CacheContext, _set_cache_context

        if self.removed:
            raise self.error("was removed and cannot run")
        self._record()
        _set_cache_context(self.model, CacheContext("cfg_batch", step_index=step_index, num_inference_steps=num_steps,
                                                    timestep=timestep, sigma=sea_sigma(self.model, timestep)))
        self._pending = True

    def _record(self) -> None:
        if self._pending:
            self.decisions.append(bool(self._leader_state().gate_should_compute))
        self._pending = False


def _textkv(run: DiffusersRun):
    from diffusers.hooks import TextKVCacheConfig

    if run.settings:
        raise TypeError(f"TextKVCacheConfig takes no settings, got {sorted(run.settings)}")
    return TextKVCacheConfig()


# --- cache-dit ----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet_cache_dit():
    """cache-dit logs several INFO lines per enable/refresh and a WARNING per disable to stdout: mute its console
    handler while we call it, then put its level back."""
    from cache_dit import logger as cd_logger

    handler = cd_logger._default_handler
    level = handler.level if handler is not None else None
    if handler is not None:
        handler.setLevel(logging.ERROR)
    try:
        yield
    finally:
        if handler is not None:
            handler.setLevel(level)


# cache-dit's calibrators (they forecast the cached Bn residual; DBCache still decides what is cached):
# name -> the config class in cache_dit.
_CALIBRATORS = {"taylorseer": "TaylorSeerCalibratorConfig", "foca": "FoCaCalibratorConfig",
                "dmd": "DMDCalibratorConfig"}


class CacheDitRun(PeerRun):
    """cache-dit's DBCache on a bare transformer; with a ``calibrator`` (taylorseer, foca, dmd) that calibrator
    forecasts the Bn residual. Settings are DBCacheConfig kwargs, plus the calibrator config's kwargs."""

    def __init__(self, name, model, settings, steps, calibrator: str | None):
        super().__init__(name, model, settings, steps)
        import cache_dit
        from cache_dit import DBCacheConfig

        calib_cls = getattr(cache_dit, _CALIBRATORS[calibrator]) if calibrator else None
        calib_fields = {f.name for f in dataclasses.fields(calib_cls)} if calib_cls else set()
        cache_kw = {k: v for k, v in self.settings.items() if k not in calib_fields}
        calib_kw = {k: v for k, v in self.settings.items() if k in calib_fields}
        # One call per step with the CFG batch doubled: no separate CFG branch for cache-dit to track.
        self._cache_config = lambda: DBCacheConfig(**cache_kw, num_inference_steps=steps, enable_separate_cfg=False)
        self._calib_config = (lambda: calib_cls(**calib_kw)) if calib_cls else (lambda: None)
        try:
            self._cache_config(), self._calib_config()
        except TypeError as e:
            self._snapshot.restore()
            self.removed = True
            raise self.error(f"got bad settings {self.settings}: {e}") from e
        try:
            with _quiet_cache_dit():
                target = model
                if _cls(model) in _CACHE_DIT_BLOCKS:
                    blocks, pattern = _CACHE_DIT_BLOCKS[_cls(model)]
                    target = cache_dit.BlockAdapter(transformer=model, blocks=getattr(model, blocks),
                                                    forward_pattern=getattr(cache_dit.ForwardPattern, pattern))
                cache_dit.enable_cache(target, cache_config=self._cache_config(),
                                       calibrator_config=self._calib_config())
        except Exception as e:
            self._abort()
            raise self.error(f"could not be applied ({type(e).__name__}: {e})") from e

    def before_call(self, step_index, timestep, num_steps) -> None:
        if self.removed:
            raise self.error("was removed and cannot run")

    def reset(self) -> None:
        import cache_dit

        with _quiet_cache_dit():
            cache_dit.refresh_context(self.model, cache_config=self._cache_config(),
                                      calibrator_config=self._calib_config())

    def _remove(self) -> None:
        import cache_dit

        with _quiet_cache_dit():
            cache_dit.disable_cache(self.model)

    def summary(self) -> dict:
        import cache_dit

        with _quiet_cache_dit():
            stats = cache_dit.summary(self.model, logging=False)
        if not stats:
            return {}
        cached = sorted(stats[0].cached_steps)  # steps whose Fn blocks ran and the rest came from the cache
        return {"skipped_calls": len(cached), "skipped_steps": cached}


# ---------------------------------------------------------------------------------------------------------------
# The registry. Sweeps were measured on the shipped DiT and Flux defaults (checkpoints at 250 and 200 of 1350
# training steps, November 2026), 50 steps, CFG 3, 4 images; "FLOPs" = counted FLOPs relative to uncached (torch's
# FlopCounterMode), "skipped" = calls whose blocks after the first were not run, out of 50. Each sweep runs from
# the peer's own default (or its lightest setting) to the most aggressive setting that still changes little.
# The libraries' defaults are tuned for 19-57-block models: cache-dit's Fn=8 is more blocks than our 6.

_DBCACHE = {"Fn_compute_blocks": 1, "Bn_compute_blocks": 0, "max_warmup_steps": 4}  # F1B0 = FBCache; warmup 4 of 50


def _diffusers(name: str, make_config) -> Callable:
    return lambda model, settings, steps: DiffusersRun(name, model, settings, steps, make_config)


PEERS: dict[str, PeerSpec] = {
    # First-block residual change (rel. L1) below the threshold -> reuse the rest of the stack. 0.05 is diffusers'
    # default. DiT: skipped 24/34/42/44, FLOPs 0.60/0.44/0.30/0.27; Flux: skipped 30/37/43/45, FLOPs
    # 0.50/0.39/0.29/0.25. (0.02 skips 7 on DiT, 1 on Flux; 0.5 adds little over 0.3.)
    # Widened to 0.5 to reach past 4x (BENCHMARKS.md has the measured points).
    "fbcache": PeerSpec("diffusers", "diffusers FirstBlockCache", tuple(
        {"threshold": t} for t in (0.1, 0.3, 0.5)
    ), _diffusers("fbcache", _fbcache)),
    # Self-attention reused for k-1 of every k calls inside a timestep window ((100, 800) is diffusers' default).
    # Attention is a small share of FLOPs at 64 tokens: DiT 0.87 (k=2) / 0.80 (k=4) / 0.76 (k=3, whole schedule);
    # Flux 0.89 / 0.83 / 0.78.
    # It cannot reach 4x here (attention only): its most aggressive setting is kept.
    "pab": PeerSpec("diffusers", "diffusers PyramidAttentionBroadcast", (
        {"spatial_attention_block_skip_range": 3, "spatial_attention_timestep_skip_range": (0, 1000)},
    ), _diffusers("pab", _pab)),
    # {} = diffusers' defaults (attention every 2nd call, the uncond half computed every 5th call and otherwise
    # rebuilt from frequency-band deltas): DiT FLOPs 0.68, attention every 3rd: 0.66. Attention-only mode
    # (is_guidance_distilled=True: no CFG-Cache; the only mode that runs on Flux): DiT 0.86 / 0.83, Flux 0.89 / 0.85.
    # Its defaults, then its attention-only mode (the only one that runs on Flux); it cannot reach 4x here.
    "fastercache": PeerSpec("diffusers", "diffusers FasterCache", (
        {"spatial_attention_block_skip_range": 3},
        {"spatial_attention_block_skip_range": 3, "is_guidance_distilled": True},
    ), _diffusers("fastercache", _fastercache)),
    # Full step every `cache_interval` after 3 warm-up steps, Taylor forecast between (diffusers' defaults: 5, 3, 1).
    # FLOPs 0.53 / 0.39 / 0.27 on both models; order 2 costs the same FLOPs and gains 0.5-2 dB PSNR at interval 5.
    # Widened to interval 6 and 8 (order 2) to reach past 4x.
    "diffusers-taylorseer": PeerSpec("diffusers", "diffusers TaylorSeer", (
        {"cache_interval": 3, "disable_cache_before_step": 3, "max_order": 1},
        {"cache_interval": 5, "disable_cache_before_step": 3, "max_order": 2},
        {"cache_interval": 6, "disable_cache_before_step": 3, "max_order": 2},
        {"cache_interval": 8, "disable_cache_before_step": 3, "max_order": 2},
    ), _diffusers("diffusers-taylorseer", _taylorseer)),
    # Accumulated magnitude-ratio error below the threshold, at most max_skip_steps in a row, never in the first
    # 20% of steps; ratios calibrated per model and step count (diffusers' defaults 0.06, 3, 0.2).
    # DiT: (0.03, 2) skipped 26, FLOPs 0.48; (0.06, 4) 31, 0.38; (0.12, 4) 32, 0.36 (past 0.12 max_skip_steps binds).
    # Flux: (0.03, 2) 24, 0.52; (0.06, 4) 30, 0.40; (0.12, 4) 31, 0.38.
    # Widened with a looser error budget and longer skips (0.3, 6) to reach past 4x, and a point between the two
    # (0.2, 5), since on flux (0.12, 4) is the fastest peer within FD +5% and (0.3, 6) is past it.
    "magcache": PeerSpec("diffusers", "diffusers MagCache", (
        {"threshold": 0.12, "max_skip_steps": 4, "retention_ratio": 0.2},
        {"threshold": 0.2, "max_skip_steps": 5, "retention_ratio": 0.1},
        {"threshold": 0.3, "max_skip_steps": 6, "retention_ratio": 0.1},
    ), lambda model, settings, steps: MagCacheRun("magcache", model, settings, steps)),
    # DBCache F1B0 (first block always computed, no tail blocks), 4 warm-up steps (cache-dit's default 8 saves
    # 3-5 fewer steps at equal threshold). DiT: skipped 22/32/39/42, FLOPs 0.64/0.47/0.35/0.30; Flux: skipped
    # 21/32/38/41, FLOPs 0.65/0.47/0.37/0.32.
    "dbcache": PeerSpec("cache-dit", "cache-dit DBCache", tuple(
        {**_DBCACHE, "residual_diff_threshold": t} for t in (0.1, 0.3, 0.5)
    ), lambda model, settings, steps: CacheDitRun("dbcache", model, settings, steps, calibrator=None)),
    # The same with cache-dit's TaylorSeer calibrator (order 1, its default) forecasting the cached residual:
    # identical decisions and FLOPs; PSNR vs uncached +0.5-0.7 dB on DiT, +7-14 dB on Flux over plain reuse.
    "dbcache-taylorseer": PeerSpec("cache-dit", "cache-dit DBCache + TaylorSeer", tuple(
        {**_DBCACHE, "residual_diff_threshold": t, "taylorseer_order": 1} for t in (0.3, 0.5)
    ), lambda model, settings, steps: CacheDitRun("dbcache-taylorseer", model, settings, steps,
                                                  calibrator="taylorseer")),
    # cache-dit 1.5.3's FoCa calibrator (forecast then calibrate, on the Bn residual; it has no settings).
    "dbcache-foca": PeerSpec("cache-dit", "cache-dit DBCache + FoCa", tuple(
        {**_DBCACHE, "residual_diff_threshold": t} for t in (0.3, 0.5)
    ), lambda model, settings, steps: CacheDitRun("dbcache-foca", model, settings, steps, calibrator="foca")),
    # SeaCache (arXiv 2602.18993): the relative L1 change of the spectrally filtered (Wiener gain from the step's
    # sigma, clean power ~ 1/f^power_exp) input latents, accumulated, below the threshold -> the block stack's
    # residual is reused (order 1: extrapolated from the last two). diffusers' defaults first (0.25, order 1, at
    # most 2 in a row), then longer runs and a looser budget to reach past 4x. Unmeasured on the defaults yet.
    "seacache": PeerSpec("diffusers", "diffusers SeaCache", (
        {},
        {"threshold": 0.5, "max_consecutive_cached": 4},
        {"threshold": 1.0, "max_consecutive_cached": 6},
    ), lambda model, settings, steps: SeaCacheRun("seacache", model, settings, steps)),
    # TextKVCache: the text key/value projections computed once per prompt, exact. diffusers 0.42.1 hooks it on
    # NucleusMoE-Image blocks only (their attention takes the cached projections), so on other classes it is
    # refused ("found no module to hook"); enable_cache takes one config, so it cannot be stacked with another
    # cache through diffusers' own route.
    "textkv": PeerSpec("diffusers", "diffusers TextKVCache", ({},), _diffusers("textkv", _textkv)),
    # cache-dit 1.5.3's DMD calibrator (dynamic mode decomposition of the last 6 residuals, its defaults).
    "dbcache-dmd": PeerSpec("cache-dit", "cache-dit DBCache + DMD", tuple(
        {**_DBCACHE, "residual_diff_threshold": t} for t in (0.3, 0.5)
    ), lambda model, settings, steps: CacheDitRun("dbcache-dmd", model, settings, steps, calibrator="dmd")),
}


def make_peer(name: str, model: nn.Module, settings: dict | None = None, steps: int = 50) -> PeerRun:
    """Apply peer ``name`` with ``settings`` (kwargs of its config) to ``model`` for ``steps``-step generations."""
    if name not in PEERS:
        raise KeyError(f"unknown peer {name!r}; valid names: {sorted(PEERS)}")
    spec = PEERS[name]
    if spec.package == "cache-dit":
        try:
            import cache_dit  # noqa: F401
        except ImportError as e:
            raise PeerError(f"{spec.label} needs cache-dit: pip install 'ditcache[peers]'") from e
    return spec.apply(model, dict(settings or {}), steps)


def peer_versions() -> dict[str, str]:
    """Installed versions of the peer packages ("not installed" when absent)."""
    out = {}
    for dist in ("diffusers", "cache-dit"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def generate_with_peer(peer: PeerRun, model: nn.Module, noise: torch.Tensor, cond: dict, uncond: dict | None,
                       steps: int, guidance_scale: float) -> torch.Tensor:
    """One generation with ``peer`` applied: prepare (calibration, once), reset, then our sampler with the
    peer's per-call hook. Errors inside come back as PeerError naming the peer and the model class."""
    if getattr(model, "_orig_mod", model) is not peer.model:  # the model, or torch.compile's wrapper of it
        raise ValueError(f"{peer.label} was applied to a different model object")
    if steps != peer.steps:
        raise ValueError(f"{peer.label} was applied for {peer.steps} steps, asked for {steps}")
    try:
        peer.prepare(noise, cond, uncond, guidance_scale)
        peer.reset()
        return sample(model, noise, cond, uncond, steps=steps, guidance_scale=guidance_scale,
                      before_call=peer.before_call)
    except PeerError:
        raise
    except Exception as e:
        raise peer.error(f"failed during generation ({type(e).__name__}: {e})") from e
