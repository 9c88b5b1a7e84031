"""What ditcache is applied to: a bare transformer (compiled or not) or a pipeline, and the transformers a
pipeline holds."""

from __future__ import annotations

from torch import nn


def _is_compiled(model) -> bool:
    return isinstance(model, nn.Module) and hasattr(model, "_orig_mod")


def _find_model(target) -> tuple[nn.Module, object | None, object | None]:
    """(transformer, pipeline, scheduler): a bare transformer, or a pipeline holding one as
    ``.transformer`` whose scheduler delimits generations and steps."""
    if isinstance(target, nn.Module):
        return _uncompiled(target), None, None
    model = getattr(target, "transformer", None)
    if isinstance(model, nn.Module):
        scheduler = getattr(target, "scheduler", None)
        return _uncompiled(model), target, scheduler if hasattr(scheduler, "set_timesteps") else None
    raise TypeError(
        f"ditcache needs a diffusers transformer or a pipeline with a .transformer, got {type(target).__name__}"
    )


def _uncompiled(model: nn.Module) -> nn.Module:
    """The module torch.compile wrapped (hooks go on it: the compiled wrapper calls it), or the model itself."""
    return getattr(model, "_orig_mod", model)


def _denoisers(target) -> list[str]:
    """The pipeline attributes holding its transformers: ``transformer``, ``transformer_2``, ... (Wan 2.2's
    high- and low-noise experts); [] for a bare model."""
    if isinstance(target, nn.Module):
        return []
    components = getattr(target, "components", None) or {"transformer": getattr(target, "transformer", None)}
    return [n for n, c in components.items() if n.startswith("transformer") and isinstance(c, nn.Module)]
