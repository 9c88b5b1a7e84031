"""The method registry: one file per method, each a config dataclass whose ``plan`` gives per-site plans."""

from __future__ import annotations

import dataclasses
import importlib

from .clusca import ClusCa
from .fora import FORA
from .freqca import FreqCa
from .hyca import HyCa
from .l2c import L2C
from .l2p import L2P
from .meancache import MeanCache
from .nocache import NoCache
from .replay import Replay
from .speca import SpeCa
from .taylorseer import TaylorSeer
from .toca import ToCa
from .tokencache import TokenCache

METHODS: dict[str, type] = {
    "none": NoCache,
    "fora": FORA,
    "taylorseer": TaylorSeer,
    "toca": ToCa,
    "clusca": ClusCa,
    "l2c": L2C,
    "tokencache": TokenCache,
    "freqca": FreqCa,
    "speca": SpeCa,
    "hyca": HyCa,
    "l2p": L2P,
    "meancache": MeanCache,
}


def parse_method(text: str):
    """``"fora"``, ``"fora:interval=3"``, ``"taylorseer:interval=5,order=1"`` -> a method config;
    ``"toca:preset=flux,interval=5"`` starts from a method's preset."""
    name, _, args = text.partition(":")
    try:
        cls = METHODS[name.strip().lower()]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known methods: {sorted(METHODS)}") from None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    preset = None
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, eq, value = item.partition("=")
        if key == "preset" and eq and hasattr(cls, "preset"):
            preset = value
            continue
        if not eq or key not in fields:
            raise ValueError(f"bad setting {item!r} for {name}: expected key=value with key in {sorted(fields)}")
        if key == "forecast":  # a forecaster by name, with its defaults: clusca:forecast=hicache
            from ..forecast import forecaster

            kwargs[key] = forecaster(value)
            continue
        kind = type(getattr(cls(), key))
        if kind is type(None):  # an optional setting (default None): its annotation names the type
            kind = next((t for t in (bool, int, float, str) if t.__name__ in str(fields[key].type)), kind)
        if kind not in (int, float, str, bool):
            raise ValueError(f"{name}.{key} cannot be set from the command line; use the Python API")
        if kind is int and "float" in str(fields[key].type) and not value.strip().lstrip("-").isdigit():
            kind = float  # int | float (a warm-up as a share of the run): "3" is steps, "0.06" a share
        try:
            kwargs[key] = {bool: lambda v: v.lower() in ("1", "true", "yes")}.get(kind, kind)(value)
        except ValueError:
            raise ValueError(f"bad value {value!r} for {name}.{key}: expected {kind.__name__}") from None
    return cls.preset(preset, **kwargs) if preset is not None else cls(**kwargs)


def describe(method, full: bool = False) -> str:
    """``fora:interval=3``: the method and the settings that differ from its defaults (all with full). A
    setting nearer one of the method's presets than its defaults (fewer fields differ) is written from the
    preset, ``toca:preset=opensora,interval=4``, which parse_method reads back to the same config."""
    def differing(base) -> list[str]:
        return [f"{f.name}={_short(getattr(method, f.name))}" for f in dataclasses.fields(method)
                if full or getattr(method, f.name) != getattr(base, f.name)]

    args = differing(type(method)())
    if not full:
        # the presets live beside the method's class (its module's PRESETS, read by its preset() classmethod)
        presets = getattr(importlib.import_module(type(method).__module__), "PRESETS", {})
        for preset_name, preset in presets.items():
            if hasattr(type(method), "preset") and type(preset) is type(method):
                other = differing(preset)
                if len(other) + 1 < len(args):
                    args = [f"preset={preset_name}", *other]
    return f"{method.name}:{','.join(args)}" if args else method.name


def _short(value) -> str:
    if callable(getattr(value, "predict", None)) and value == type(value)():  # a forecaster at its defaults
        return value.name
    return str(value).replace(" ", "").replace("'", "")


def resolve_method(method):
    """A method config, or the registry name of one (built with its documented defaults)."""
    if isinstance(method, str):
        return parse_method(method)
    if method is None:
        raise TypeError("method is None: pass a method config, e.g. ditcache.FORA(interval=3), or "
                        "ditcache.NoCache() to run uncached")
    if isinstance(method, type):
        raise TypeError(f"{method.__name__} is a method class: pass an instance, e.g. {method.__name__}(), "
                        f"or its name as text, e.g. {getattr(method, 'name', method.__name__.lower())!r}")
    if not callable(getattr(method, "plan", None)):
        raise TypeError(f"not a ditcache method: {method!r} (expected one of {sorted(METHODS)} or its config)")
    method.validate()
    return method


__all__ = [
    "FORA", "L2C", "L2P", "METHODS", "ClusCa", "FreqCa", "HyCa", "MeanCache", "NoCache", "Replay", "SpeCa",
    "TaylorSeer", "ToCa", "TokenCache",
    "describe", "parse_method", "resolve_method",
]
